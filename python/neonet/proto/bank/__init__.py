"""NeoBankof, sans-I/O: messages, ledger state, validators, wallets and offline POS.

See ``docs/bank.md``; the block format underneath is ``docs/ledger.md``.
"""
