"""NeoBankof application layer: durable stores and keystore (``docs/bank.md``).

The protocol engines are in ``neonet.proto.bank``; this package gives them SQLite
storage (WAL, ``synchronous=FULL``: money is at stake) and an encrypted keystore.
"""
