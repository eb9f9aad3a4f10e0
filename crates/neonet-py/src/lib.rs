//! PyO3 glue only: exposes `neonet-core` to Python as `neonet._native`.
//!
//! Errors from the core map once onto NeoNet's Python exceptions (the same classes the
//! pure-Python twins raise): `Error::Decode` -> `neonet.core.errors.DecodeError`,
//! `Error::InvalidArgument` -> `ValueError`.

mod gossip;
mod ledger;
mod routing;

use neonet_core::Error;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

pub(crate) fn to_python_error(py: Python<'_>, error: Error) -> PyErr {
    match error {
        Error::Decode(message) => match py
            .import("neonet.core.errors")
            .and_then(|module| module.getattr("DecodeError"))
        {
            Ok(class) => PyErr::from_value(
                class
                    .call1((message,))
                    .unwrap_or_else(|err| err.into_value(py).into_bound(py).into_any()),
            ),
            Err(err) => err,
        },
        Error::InvalidArgument(message) => PyValueError::new_err(message),
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
    Ok(())
}
