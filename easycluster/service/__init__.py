"""``easycluster -S``, the standalone TCP service: ``tcpserver`` (fork per authenticated
connection, signals, draining), ``listener`` (accept, allow list, handshakes without
threads), ``config`` (the configuration file), ``systemd`` (the boot service) and the
``kit/`` it installs."""
