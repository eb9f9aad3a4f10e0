//! NeoNet's hot paths in pure Rust, free of any Python dependency.
//!
//! `neonet-py` binds these to Python as `neonet._native`; every function here has a
//! pure-Python twin with the same results and errors (see `neonet.core.backend`).

pub mod base58;
pub mod gossip;
pub mod ledger;
pub mod noise_transport;
pub mod noise_yamux;
pub mod routing;
pub mod signal_router;
pub mod ssn_wire;
pub mod yamux;

use std::fmt;

/// The one error type of this crate; `neonet-py` maps it onto NeoNet's Python exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Input bytes or text that do not decode (maps to `neonet.core.errors.DecodeError`).
    Decode(String),
    /// An argument outside the accepted range (maps to `ValueError`).
    InvalidArgument(String),
    /// The peer broke a protocol rule (maps to `neonet.core.errors.RemoteProtocolError`,
    /// with `code` as its wire error code).
    RemoteProtocol { message: String, code: Option<u32> },
    /// Our caller misused an engine (maps to `neonet.core.errors.LocalProtocolError`).
    LocalProtocol(String),
    /// A configured limit was hit (maps to `neonet.core.errors.LimitExceededError`).
    LimitExceeded(String),
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Decode(message)
            | Error::InvalidArgument(message)
            | Error::RemoteProtocol { message, .. }
            | Error::LocalProtocol(message)
            | Error::LimitExceeded(message) => formatter.write_str(message),
        }
    }
}

impl std::error::Error for Error {}
