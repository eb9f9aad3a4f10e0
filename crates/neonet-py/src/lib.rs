//! PyO3 glue only: exposes `neonet-core` to Python as `neonet._native`.
//!
//! Errors from the core map once onto NeoNet's Python exceptions (the same classes the
//! pure-Python twins raise): `Error::Decode` -> `neonet.core.errors.DecodeError`,
//! `Error::InvalidArgument` -> `ValueError`, `Error::RemoteProtocol` ->
//! `RemoteProtocolError` (with its `code`), `Error::LocalProtocol` -> `LocalProtocolError`,
//! `Error::LimitExceeded` -> `LimitExceededError`.

mod datapath;

mod gossip;
mod ledger;
mod routing;
mod signal_router;
mod ssn_wire;

use neonet_core::Error;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Instantiate `neonet.core.errors.<name>(message, **keywords)` as a `PyErr`.
fn neonet_error(py: Python<'_>, name: &str, message: String, code: Option<Option<u32>>) -> PyErr {
    let created = py
        .import("neonet.core.errors")
        .and_then(|module| module.getattr(name))
        .and_then(|class| match code {
            None => class.call1((message,)),
            Some(code) => {
                let keywords = PyDict::new(py);
                keywords.set_item("code", code)?;
                class.call((message,), Some(&keywords))
            }
        });
    match created {
        Ok(instance) => PyErr::from_value(instance),
        Err(err) => err,
    }
}

pub(crate) fn to_python_error(py: Python<'_>, error: Error) -> PyErr {
    match error {
        Error::Decode(message) => neonet_error(py, "DecodeError", message, None),
        Error::InvalidArgument(message) => PyValueError::new_err(message),
        Error::RemoteProtocol { message, code } => {
            neonet_error(py, "RemoteProtocolError", message, Some(code))
        }
        Error::LocalProtocol(message) => neonet_error(py, "LocalProtocolError", message, None),
        Error::LimitExceeded(message) => neonet_error(py, "LimitExceededError", message, None),
    }
}

/// Encode bytes as base58btc text.
#[pyfunction]
fn base58btc_encode(py: Python<'_>, data: &[u8]) -> PyResult<String> {
    neonet_core::base58::encode(data).map_err(|error| to_python_error(py, error))
}

/// Decode base58btc text; raises `neonet.core.errors.DecodeError` on bad input.
#[pyfunction]
fn base58btc_decode(py: Python<'_>, text: &str) -> PyResult<Vec<u8>> {
    neonet_core::base58::decode(text).map_err(|error| to_python_error(py, error))
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(base58btc_encode, module)?)?;
    module.add_function(wrap_pyfunction!(base58btc_decode, module)?)?;
    routing::register(module)?;
    gossip::register(module)?;
    ledger::register(module)?;
    datapath::register(module)?;
    ssn_wire::register(module)?;
    signal_router::register(module)?;
    Ok(())
}
