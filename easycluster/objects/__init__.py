"""What crosses the wire, the same code on both ends: ``serialize`` (the only pickling),
``exports`` (which objects stay on the server: ``ServerObject`` & co.), ``proxy`` (their
client-side handles) and ``definitions`` (``define_common`` modules and dotted names).
Shipped to remote servers; imports only the standard library, cloudpickle and the
package's lower layers."""
