//! Glue for `neonet_core::ssn_wire`: the SSN signal path's messages, with the same
//! results and errors as the pure twin `neonet.core.ssn_wire`.

use neonet_core::ssn_wire::{self, Message};
use neonet_core::Error;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::to_python_error;

fn request_id(py: Python<'_>, rid: i128) -> PyResult<u64> {
    u64::try_from(rid)
        .map_err(|_| to_python_error(py, Error::InvalidArgument("request ID out of range".into())))
}

/// The fields of a signal-path message, or None (see the pure twin).
#[pyfunction]
fn ssn_parse_signal_path<'py>(
    py: Python<'py>,
    body: &[u8],
    federation: bool,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let bytes = |data: &[u8]| PyBytes::new(py, data);
    let parsed = match ssn_wire::parse(body, federation) {
        None => return Ok(None),
        Some(Message::Signal { rid, to, payload }) => {
            (5u8, rid, bytes(to), bytes(payload)).into_pyobject(py)?
        }
        Some(Message::Incoming { sender, payload }) => {
            (8u8, 0u64, bytes(sender), bytes(payload)).into_pyobject(py)?
        }
        Some(Message::Forward {
            rid,
            sender,
            to,
            payload,
        }) => (2u8, rid, bytes(sender), bytes(to), bytes(payload)).into_pyobject(py)?,
        Some(Message::SignalSent { rid, status }) => (6u8, rid, status).into_pyobject(py)?,
        Some(Message::Forwarded { rid, status }) => (5u8, rid, status).into_pyobject(py)?,
    };
    Ok(Some(parsed))
}

/// Split whole uvarint-prefixed frames off `data`: (frame bodies, bytes used).
#[pyfunction]
fn ssn_split_frames<'py>(
    py: Python<'py>,
    data: &[u8],
    max_frame: u64,
) -> PyResult<(Vec<Bound<'py, PyBytes>>, usize)> {
    let (frames, used) =
        ssn_wire::split_frames(data, max_frame).map_err(|error| to_python_error(py, error))?;
    let bodies = frames
        .into_iter()
        .map(|(start, end)| PyBytes::new(py, &data[start..end]))
        .collect();
    Ok((bodies, used))
}

fn to_bytes<'py>(py: Python<'py>, frame: Result<Vec<u8>, Error>) -> PyResult<Bound<'py, PyBytes>> {
    frame
        .map(|frame| PyBytes::new(py, &frame))
        .map_err(|error| to_python_error(py, error))
}

/// The frame of client SIGNAL `[1, 5, rid, to, payload]`.
#[pyfunction]
fn ssn_encode_signal<'py>(
    py: Python<'py>,
    rid: i128,
    to: &[u8],
    payload: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    to_bytes(
        py,
        ssn_wire::encode_signal(request_id(py, rid)?, to, payload),
    )
}

/// The frame of client INCOMING `[1, 8, 0, sender, payload]`.
#[pyfunction]
fn ssn_encode_incoming<'py>(
    py: Python<'py>,
    sender: &[u8],
    payload: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    to_bytes(py, ssn_wire::encode_incoming(sender, payload))
}

/// The frame of federation FORWARD `[1, 2, rid, sender, to, payload]`.
#[pyfunction]
fn ssn_encode_forward<'py>(
    py: Python<'py>,
    rid: i128,
    sender: &[u8],
    to: &[u8],
    payload: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    to_bytes(
        py,
        ssn_wire::encode_forward(request_id(py, rid)?, sender, to, payload),
    )
}

/// The frame of SIGNAL_SENT or, `federation`, FORWARDED `[1, kind, rid, status]`.
#[pyfunction]
fn ssn_encode_status<'py>(
    py: Python<'py>,
    federation: bool,
    rid: i128,
    status: i128,
) -> PyResult<Bound<'py, PyBytes>> {
    let status = u8::try_from(status).unwrap_or(u8::MAX);
    to_bytes(
        py,
        ssn_wire::encode_status(federation, request_id(py, rid)?, status),
    )
}

pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(ssn_parse_signal_path, module)?)?;
    module.add_function(wrap_pyfunction!(ssn_encode_signal, module)?)?;
    module.add_function(wrap_pyfunction!(ssn_encode_incoming, module)?)?;
    module.add_function(wrap_pyfunction!(ssn_encode_forward, module)?)?;
    module.add_function(wrap_pyfunction!(ssn_encode_status, module)?)?;
    module.add_function(wrap_pyfunction!(ssn_split_frames, module)?)?;
    Ok(())
}
