"""Sans-I/O engines of the Signaling Server Network (ARCHITECTURE.md, "The Signaling
Server Network"): federation membership, record placement, the signed seed list and the
signal mailbox. The trio layer that drives them lives in ``neonet.services``.
"""
