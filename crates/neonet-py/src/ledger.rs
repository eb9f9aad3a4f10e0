//! Glue for `neonet_core::ledger`: canonical CBOR, block hashing, ZIP-215 signatures and
//! chain verification, with the same signatures, results and errors as the pure twins
//! `neonet.core.cbor` and `neonet.core.ledger`. Batch calls release the GIL.

use std::borrow::Cow;

use neonet_core::ledger::cbor::{self, Value};
use neonet_core::ledger::{
    chain, ed25519, hash_block_body as core_hash_block_body, vote_message, vote_root,
    vote_tree as core_vote_tree,
};
use neonet_core::Error;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBool, PyBytes, PyInt, PyList, PyString, PyTuple};

use crate::to_python_error;

/// Encode a value of the canonical CBOR subset; ValueError for anything outside it.
#[pyfunction]
fn cbor_encode<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let py = value.py();
    let value = to_value(value, 0)?;
    let encoded = cbor::encode(&value).map_err(|error| to_python_error(py, error))?;
    Ok(PyBytes::new(py, &encoded))
}

fn to_value<'py>(object: &Bound<'py, PyAny>, depth: usize) -> PyResult<Value<'static>> {
    // The same order of checks as the pure twin, so the first error is the same one.
    if let Ok(boolean) = object.cast::<PyBool>() {
        return Ok(Value::Bool(boolean.is_true()));
    }
    if object.cast::<PyInt>().is_ok() {
        let number: i128 = object
            .extract()
            .map_err(|_| PyValueError::new_err(out_of_range()))?;
        return match u64::try_from(number) {
            Ok(unsigned) => Ok(Value::Unsigned(unsigned)),
            Err(_) => u64::try_from(-1 - number)
                .map(Value::Negative)
                .map_err(|_| PyValueError::new_err(out_of_range())),
        };
    }
    if let Ok(bytes) = object.cast::<PyBytes>() {
        return Ok(Value::Bytes(Cow::Owned(bytes.as_bytes().to_vec())));
    }
    if let Ok(text) = object.cast::<PyString>() {
        let text = text
            .to_str()
            .map_err(|_| PyValueError::new_err("text is not valid Unicode (lone surrogate)"))?;
        return Ok(Value::Text(Cow::Owned(text.to_owned())));
    }
    let items = if let Ok(list) = object.cast::<PyList>() {
        Some(list.iter().collect::<Vec<_>>())
    } else {
        object
            .cast::<PyTuple>()
            .ok()
            .map(|tuple| tuple.iter().collect::<Vec<_>>())
    };
    if let Some(items) = items {
        if depth >= cbor::MAX_DEPTH {
            return Err(PyValueError::new_err(format!(
                "CBOR arrays nested deeper than {}",
                cbor::MAX_DEPTH
            )));
        }
        let values = items
            .iter()
            .map(|item| to_value(item, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(Value::Array(values));
    }
    if object.is_none() {
        return Ok(Value::Null);
    }
    Err(PyValueError::new_err(format!(
        "cannot encode {} as canonical CBOR",
        object.get_type().name()?
    )))
}

fn out_of_range() -> &'static str {
    "integer outside the 64-bit CBOR range"
}

/// Decode canonical CBOR; neonet.core.errors.DecodeError on anything else.
#[pyfunction]
fn cbor_decode<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let value = cbor::decode(data).map_err(|error| to_python_error(py, error))?;
    to_python(py, &value)
}

fn to_python<'py>(py: Python<'py>, value: &Value<'_>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Unsigned(number) => number.into_pyobject(py)?.into_any(),
        Value::Negative(number) => (-1 - i128::from(*number)).into_pyobject(py)?.into_any(),
        Value::Bytes(bytes) => PyBytes::new(py, bytes).into_any(),
        Value::Text(text) => PyString::new(py, text).into_any(),
        Value::Array(items) => {
            let objects = items
                .iter()
                .map(|item| to_python(py, item))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, objects)?.into_any()
        }
        Value::Bool(boolean) => PyBool::new(py, *boolean).to_owned().into_any(),
        Value::Null => py.None().into_bound(py),
    })
}

/// The block hash: BLAKE3 derive-key ("NeoNet 2026 bank block v1") over the encoded body.
#[pyfunction]
fn hash_block_body<'py>(py: Python<'py>, body: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &core_hash_block_body(body))
}

/// A block's vote message (from its encoded body) and the root each `(sides, path)` leads
/// to from it in a batch vote tree (`(0, b"")`: the message itself, a direct vote).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn vote_roots<'py>(
    py: Python<'py>,
    committee_id: &[u8],
    body: &[u8],
    paths: Vec<(u64, PyBackedBytes)>,
) -> PyResult<(Bound<'py, PyBytes>, Vec<Bound<'py, PyBytes>>)> {
    let leaf = vote_message(committee_id, &core_hash_block_body(body));
    let mut roots = Vec::with_capacity(paths.len());
    for (sides, path) in &paths {
        let root = vote_root(&leaf, *sides, path)
            .ok_or_else(|| PyValueError::new_err("a vote path is at most 16 nodes of 32 bytes"))?;
        roots.push(PyBytes::new(py, &root));
    }
    Ok((PyBytes::new(py, &leaf), roots))
}

/// The root of the batch vote tree over `leaves` (32-byte vote messages, in batch order)
/// and, with `paths`, each leaf's `(sides, path)` (else an empty list).
#[pyfunction]
#[pyo3(signature = (leaves, paths = true))]
#[allow(clippy::type_complexity)]
fn vote_tree<'py>(
    py: Python<'py>,
    leaves: Vec<PyBackedBytes>,
    paths: bool,
) -> PyResult<(Bound<'py, PyBytes>, Vec<(u64, Bound<'py, PyBytes>)>)> {
    let mut nodes = Vec::with_capacity(leaves.len());
    for leaf in &leaves {
        let node: [u8; 32] = leaf
            .as_ref()
            .try_into()
            .map_err(|_| PyValueError::new_err("a vote tree leaf is 32 bytes"))?;
        nodes.push(node);
    }
    let (root, found) = core_vote_tree(&nodes, paths)
        .ok_or_else(|| PyValueError::new_err("a vote tree has 1..65536 leaves"))?;
    let found = found
        .into_iter()
        .map(|(sides, path)| (sides, PyBytes::new(py, &path)))
        .collect();
    Ok((PyBytes::new(py, &root), found))
}

/// Verify one Ed25519 signature under the ZIP-215 rules (wrong lengths are just invalid).
#[pyfunction]
fn verify_signature(py: Python<'_>, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    py.detach(|| ed25519::verify(public_key, message, signature))
}

fn backed_bytes(object: Bound<'_, PyAny>, what: &str) -> PyResult<PyBackedBytes> {
    match object.cast_into::<PyBytes>() {
        Ok(bytes) => Ok(PyBackedBytes::from(bytes)),
        Err(_) => Err(PyTypeError::new_err(format!("{what} must be bytes"))),
    }
}

/// Verify (public_key, message, signature) triples; one verdict each, equal to
/// `verify_signature` of that triple. Batched internally; releases the GIL.
#[pyfunction]
fn verify_signatures(py: Python<'_>, items: &Bound<'_, PyAny>) -> PyResult<Vec<bool>> {
    if items.len()? > ed25519::MAX_BATCH {
        return Err(PyValueError::new_err(format!(
            "at most {} signatures per call",
            ed25519::MAX_BATCH
        )));
    }
    let mut triples = Vec::with_capacity(items.len()?);
    for item in items.try_iter()? {
        let item = item?;
        let tuple = match item.cast::<PyTuple>() {
            Ok(tuple) if tuple.len() == 3 => tuple.clone(),
            _ => {
                return Err(PyTypeError::new_err(
                    "each item must be a (public_key, message, signature) tuple",
                ))
            }
        };
        triples.push((
            backed_bytes(tuple.get_item(0)?, "public_key")?,
            backed_bytes(tuple.get_item(1)?, "message")?,
            backed_bytes(tuple.get_item(2)?, "signature")?,
        ));
    }
    Ok(py.detach(|| {
        let items: Vec<ed25519::Item<'_>> = triples
            .iter()
            .map(|(public_key, message, signature)| ed25519::Item {
                public_key,
                message,
                signature,
            })
            .collect();
        ed25519::verify_batch(&items)
    }))
}

fn fixed32(object: &Bound<'_, PyAny>, what: &str) -> PyResult<[u8; 32]> {
    object
        .cast::<PyBytes>()
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_bytes()).ok())
        .ok_or_else(|| PyValueError::new_err(format!("{what} must be 32 bytes")))
}

fn head_from_python(head: &Bound<'_, PyAny>) -> PyResult<chain::Head> {
    Ok(chain::Head {
        account: fixed32(&head.getattr("account")?, "account")?,
        sequence: head.getattr("sequence")?.extract()?,
        hash: fixed32(&head.getattr("hash")?, "hash")?,
        balance: head.getattr("balance")?.extract()?,
        key: fixed32(&head.getattr("key")?, "key")?,
    })
}

/// Verify one account's chain from its OPEN block or from `start`; returns a
/// `neonet.core.ledger.ChainVerdict`. Releases the GIL.
#[pyfunction]
#[pyo3(signature = (blocks, *, mint_account, start = None, signatures = true))]
fn verify_chain<'py>(
    py: Python<'py>,
    blocks: &Bound<'py, PyAny>,
    mint_account: Option<&Bound<'py, PyAny>>,
    start: Option<&Bound<'py, PyAny>>,
    signatures: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if blocks.len()? > chain::MAX_BLOCKS {
        return Err(to_python_error(
            py,
            Error::InvalidArgument(format!("at most {} blocks per call", chain::MAX_BLOCKS)),
        ));
    }
    let mint_account = mint_account
        .map(|account| fixed32(account, "mint_account"))
        .transpose()?;
    let start = start.map(head_from_python).transpose()?;
    let mut encoded = Vec::with_capacity(blocks.len()?);
    for block in blocks.try_iter()? {
        encoded.push(backed_bytes(block?, "each block")?);
    }
    let verdict = py
        .detach(|| chain::verify_chain_with(&encoded, mint_account.as_ref(), start, signatures))
        .map_err(|error| to_python_error(py, error))?;

    let ledger = py.import("neonet.core.ledger")?;
    let head = match verdict.head {
        Some(head) => ledger.getattr("ChainHead")?.call1((
            PyBytes::new(py, &head.account),
            head.sequence,
            PyBytes::new(py, &head.hash),
            head.balance,
            PyBytes::new(py, &head.key),
        ))?,
        None => py.None().into_bound(py),
    };
    let failure = match verdict.failure {
        Some(failure) => {
            let reason = ledger
                .getattr("RejectReason")?
                .call1((failure.reason as u8,))?;
            ledger
                .getattr("ChainFailure")?
                .call1((failure.index, reason, failure.message))?
        }
        None => py.None().into_bound(py),
    };
    ledger
        .getattr("ChainVerdict")?
        .call1((verdict.valid_count, head, failure))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(cbor_encode, module)?)?;
    module.add_function(wrap_pyfunction!(cbor_decode, module)?)?;
    module.add_function(wrap_pyfunction!(hash_block_body, module)?)?;
    module.add_function(wrap_pyfunction!(vote_roots, module)?)?;
    module.add_function(wrap_pyfunction!(vote_tree, module)?)?;
    module.add_function(wrap_pyfunction!(verify_signature, module)?)?;
    module.add_function(wrap_pyfunction!(verify_signatures, module)?)?;
    module.add_function(wrap_pyfunction!(verify_chain, module)?)?;
    Ok(())
}
