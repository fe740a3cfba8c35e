# map/list/all/reverse answers of the [ext,ex] source; a log of the calls goes to
# $CFGDIR/calls.log so tests can see which upcalls ran
echo "$*" >> calls.log
case "$1" in
  map) case "$2" in
        web) echo "web[1-4]";;
        db) echo "db[01-03]";;
        mixed) echo "web[1-2] db01"; echo "x[1-2]-[3-4]";;
        empty) ;;
        gog) echo "@web,@db";;
        *) exit 1;;
       esac;;
  list) echo web; echo db; echo mixed; echo empty; echo gog;;
  all) echo "web[1-4],db[01-03],x[1-2]-[3-4]";;
  reverse) case "$2" in web*) echo web;; db*) echo db;; esac;;
esac
