"""The Signaling Server Network in trio: the SSN server (``server``), its client
(``client``), the framed request channel both use (``channel``) and the SSN's persisted
operator data (``operator_store``). The protocol engines are in ``neonet.proto.ssn``.
"""
