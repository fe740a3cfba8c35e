"""How a server comes to exist, seen from the master: ``ssh`` (over OpenSSH, nothing
installed remotely), ``payload`` (what the ssh bootstrap ships, per role) and ``local``
(a local server process, from a zygote or a fresh interpreter). Each returns a connected
``Channel``, never a Client."""
