//! PyO3 glue of the Kademlia routing table (`neonet_core::routing`).
//!
//! The table stores the caller's own `bytes` objects next to a copy of their bytes, so
//! `closest` and the other queries hand back those objects (a reference count, no
//! copy), as the pure-Python twin does. `update` returns the twin's
//! `neonet.core.routing.UpdateOutcome` values, so both backends give equal results.

use neonet_core::routing::{self, Config, Found, RoutingTable, Update};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList};

use crate::to_python_error;

/// Keys looked up per GIL release in `closest_many`.
const CLOSEST_CHUNK: usize = 128;

/// A stored peer: its bytes for the core, and the Python object to hand back.
struct PeerObject {
    bytes: Box<[u8]>,
    object: Py<PyBytes>,
}

impl AsRef<[u8]> for PeerObject {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl PeerObject {
    fn new(object: &Bound<'_, PyBytes>) -> Self {
        PeerObject {
            bytes: object.as_bytes().into(),
            object: object.clone().unbind(),
        }
    }
}

/// The pure twin's outcome class and the outcomes that carry no peer, made once.
struct Outcomes {
    class: Py<PyAny>,
    pending: Py<PyAny>,
    added: Py<PyAny>,
    updated: Py<PyAny>,
    queued: Py<PyAny>,
    refused: Py<PyAny>,
}

static OUTCOMES: PyOnceLock<Outcomes> = PyOnceLock::new();

fn outcomes(py: Python<'_>) -> PyResult<&Outcomes> {
    OUTCOMES.get_or_try_init(py, || {
        let module = py.import("neonet.core.routing")?;
        let class = module.getattr("UpdateOutcome")?;
        let statuses = module.getattr("UpdateStatus")?;
        let make = |name: &str| -> PyResult<Py<PyAny>> {
            Ok(class.call1((statuses.getattr(name)?,))?.unbind())
        };
        Ok::<_, PyErr>(Outcomes {
            pending: statuses.getattr("PENDING")?.unbind(),
            added: make("ADDED")?,
            updated: make("UPDATED")?,
            queued: make("QUEUED")?,
            refused: make("REFUSED")?,
            class: class.unbind(),
        })
    })
}

fn outcome_object(py: Python<'_>, outcomes: &Outcomes, update: Update) -> PyResult<Py<PyAny>> {
    Ok(match update {
        Update::Added => outcomes.added.clone_ref(py),
        Update::Updated => outcomes.updated.clone_ref(py),
        Update::Queued => outcomes.queued.clone_ref(py),
        Update::Refused => outcomes.refused.clone_ref(py),
        Update::Pending(peer) => outcomes
            .class
            .bind(py)
            .call1((outcomes.pending.bind(py), PyBytes::new(py, &peer)))?
            .unbind(),
    })
}

fn peer_list<'py, 'a>(
    py: Python<'py>,
    peers: impl IntoIterator<Item = &'a PeerObject, IntoIter: ExactSizeIterator>,
) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, peers.into_iter().map(|peer| peer.object.bind(py)))
}

/// A new list of the final length, filled in place as a lookup finds peers: one new
/// reference and one `PyList_SetItem` per peer, no vector in between (the abi3 C API
/// has no cheaper way to fill a list).
struct ListSink {
    /// Owned; null when `PyList_New` failed (the error is set, `size` is 0).
    list: *mut ffi::PyObject,
    size: usize,
    filled: usize,
}

impl ListSink {
    fn new(size: usize) -> Self {
        // SAFETY: the GIL is held (the sink lives inside a method call); a size that
        // does not fit an isize fails in PyList_New like any other allocation failure.
        let list = unsafe { ffi::PyList_New(size.try_into().unwrap_or(isize::MAX)) };
        ListSink {
            list,
            // No list: take nothing (`finish` raises the error).
            size: if list.is_null() { 0 } else { size },
            filled: 0,
        }
    }

    /// The filled list; its first `filled` items if the lookup found fewer than `size`
    /// (it never does: the table finds exactly `min(n, len)`).
    fn finish(mut self, py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
        // SAFETY: `list` is a new reference (or null with the error set); its first
        // `filled` items are set, so slicing them reads no null item.
        let list = unsafe { Bound::from_owned_ptr_or_err(py, self.take())? };
        let list = list.cast_into::<PyList>()?;
        if self.filled == self.size {
            return Ok(list);
        }
        Ok(list.get_slice(0, self.filled).cast_into::<PyList>()?)
    }
}

impl ListSink {
    /// The list, now owned by the caller.
    fn take(&mut self) -> *mut ffi::PyObject {
        std::mem::replace(&mut self.list, std::ptr::null_mut())
    }
}

impl Drop for ListSink {
    fn drop(&mut self) {
        if !self.list.is_null() {
            // SAFETY: an unfinished sink owns its list; the GIL is held (see `new`).
            unsafe { ffi::Py_DecRef(self.list) };
        }
    }
}

impl<'a> Found<'a, PeerObject> for ListSink {
    fn found(&mut self, peer: &'a PeerObject) {
        if self.filled >= self.size {
            return;
        }
        // SAFETY: the GIL is held; `list` is a list of `size` items and `filled` is
        // in range; PyList_SetItem steals the new reference made for it.
        unsafe {
            let object = peer.object.as_ptr();
            ffi::Py_IncRef(object);
            ffi::PyList_SetItem(self.list, self.filled as ffi::Py_ssize_t, object);
        }
        self.filled += 1;
    }
}

/// Kademlia routing table: 256 k-buckets by shared-prefix length with the local key.
#[pyclass(module = "neonet._native", name = "RoutingTable")]
pub struct PyRoutingTable {
    inner: RoutingTable<PeerObject>,
}

impl PyRoutingTable {
    /// The answers of `closest(key, n)` for each key, in order, handed to `each` a
    /// chunk at a time (back to back), with the answer length (`min(n, len)`, the same
    /// for every key) and the number of keys in the chunk. Every argument is
    /// checked first (nothing is handed over on error); then the lookups run in chunks
    /// without the GIL into one reused buffer, and each chunk's answers are handed
    /// over while the peers they found are still in cache.
    fn closest_chunks<'a>(
        &'a self,
        py: Python<'_>,
        keys: &[&[u8]],
        n: i64,
        mut each: impl FnMut(&[&'a PeerObject], usize, usize) -> PyResult<()>,
    ) -> PyResult<()> {
        let inner = &self.inner;
        if let Some(bad) = keys.iter().find(|key| key.len() != routing::KEY_LENGTH) {
            inner
                .closest(bad, n)
                .map_err(|error| to_python_error(py, error))?;
        }
        let size = inner
            .closest_many_with(&[], n, &mut Vec::new())
            .map_err(|error| to_python_error(py, error))?;
        let mut found: Vec<&'a PeerObject> = Vec::new();
        for chunk in keys.chunks(CLOSEST_CHUNK) {
            found.clear();
            py.detach(|| inner.closest_many_with(chunk, n, &mut found))
                .map_err(|error| to_python_error(py, error))?;
            each(&found, size, chunk.len())?;
        }
        Ok(())
    }
}

#[pymethods]
impl PyRoutingTable {
    #[new]
    #[pyo3(signature = (
        local_peer_id,
        *,
        bucket_size = 20,
        replacement_size = 10,
        pending_timeout = 30.0,
    ))]
    fn new(
        py: Python<'_>,
        local_peer_id: &[u8],
        bucket_size: i64,
        replacement_size: i64,
        pending_timeout: f64,
    ) -> PyResult<Self> {
        let config = Config {
            bucket_size,
            replacement_size,
            pending_timeout,
        };
        RoutingTable::new(local_peer_id, config)
            .map(|inner| PyRoutingTable { inner })
            .map_err(|error| to_python_error(py, error))
    }

    /// Our own peer ID (never stored in the table).
    #[getter]
    fn local_peer_id<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.local_peer_id())
    }

    /// Our own Kademlia key, SHA-256 of `local_peer_id`.
    #[getter]
    fn local_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.local_key())
    }

    /// k: the most peers one bucket holds.
    #[getter]
    fn bucket_size(&self) -> usize {
        self.inner.bucket_size()
    }

    /// The most candidates one bucket's replacement cache holds.
    #[getter]
    fn replacement_size(&self) -> usize {
        self.inner.replacement_size()
    }

    /// Seconds after which a pending liveness check lapses.
    #[getter]
    fn pending_timeout(&self) -> f64 {
        self.inner.pending_timeout()
    }

    /// Record that `peer_id` was seen at `now`; returns an `UpdateOutcome`.
    fn update(&mut self, peer_id: &Bound<'_, PyBytes>, now: f64) -> PyResult<Py<PyAny>> {
        let py = peer_id.py();
        let update = self
            .inner
            .update_with(peer_id.as_bytes(), now, || PeerObject::new(peer_id))
            .map_err(|error| to_python_error(py, error))?;
        outcome_object(py, outcomes(py)?, update)
    }

    /// `update` each peer in order (without the GIL); all arguments are checked first.
    fn update_many(
        &mut self,
        py: Python<'_>,
        peer_ids: Vec<Bound<'_, PyBytes>>,
        now: f64,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let outcomes = outcomes(py)?;
        let peers: Vec<PeerObject> = peer_ids.iter().map(PeerObject::new).collect();
        let inner = &mut self.inner;
        let updates = py
            .detach(move || inner.update_many(peers, now))
            .map_err(|error| to_python_error(py, error))?;
        updates
            .into_iter()
            .map(|update| outcome_object(py, outcomes, update))
            .collect()
    }

    /// Answer the liveness check of `peer_id`; False if none is pending for it.
    fn resolve_pending(
        &mut self,
        py: Python<'_>,
        peer_id: &[u8],
        alive: &Bound<'_, PyAny>,
        now: f64,
    ) -> PyResult<bool> {
        // Any object's truth value, as the pure twin's `if alive:` takes it.
        let alive = alive.is_truthy()?;
        self.inner
            .resolve_pending(peer_id, alive, now)
            .map_err(|error| to_python_error(py, error))
    }
    /// Forget `peer_id` (a stored peer or a replacement); True if it was known.
    fn remove(&mut self, py: Python<'_>, peer_id: &[u8]) -> PyResult<bool> {
        self.inner
            .remove(peer_id)
            .map_err(|error| to_python_error(py, error))
    }

    fn __contains__(&self, peer_id: &Bound<'_, PyAny>) -> bool {
        peer_id
            .cast::<PyBytes>()
            .is_ok_and(|peer_id| self.inner.contains(peer_id.as_bytes()))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Every stored peer: bucket 0 to 255, each least-recently-seen first.
    fn peers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        peer_list(py, self.inner.peers())
    }

    /// How many peers each of the 256 buckets holds.
    fn bucket_sizes(&self) -> Vec<usize> {
        self.inner.bucket_sizes()
    }

    /// The peers of bucket `index`, least-recently-seen first.
    fn bucket_peers<'py>(&self, py: Python<'py>, index: i64) -> PyResult<Bound<'py, PyList>> {
        let peers = self
            .inner
            .bucket_peers(index)
            .map_err(|error| to_python_error(py, error))?;
        peer_list(py, peers)
    }

    /// The replacement cache of bucket `index`, oldest first.
    fn replacements<'py>(&self, py: Python<'py>, index: i64) -> PyResult<Bound<'py, PyList>> {
        let peers = self
            .inner
            .replacements(index)
            .map_err(|error| to_python_error(py, error))?;
        peer_list(py, peers)
    }

    /// The peer of bucket `index` whose liveness check is pending, if any.
    fn pending(&self, py: Python<'_>, index: i64) -> PyResult<Option<Py<PyBytes>>> {
        let peer = self
            .inner
            .pending(index)
            .map_err(|error| to_python_error(py, error))?;
        Ok(peer.map(|peer| peer.object.clone_ref(py)))
    }

    /// When a stored peer was last seen (None if it is not stored).
    fn last_seen(&self, peer_id: &[u8]) -> Option<f64> {
        self.inner.last_seen(peer_id)
    }

    /// The bucket a 32-byte key falls in (its shared-prefix length with ours).
    fn bucket_index(&self, py: Python<'_>, key: &[u8]) -> PyResult<usize> {
        self.inner
            .bucket_index(key)
            .map_err(|error| to_python_error(py, error))
    }

    /// Up to `n` stored peers nearest `key` (a 32-byte key) by XOR, nearest first.
    fn closest<'py>(&self, py: Python<'py>, key: &[u8], n: i64) -> PyResult<Bound<'py, PyList>> {
        self.inner
            .closest_with(key, n, ListSink::new)
            .map_err(|error| to_python_error(py, error))?
            .finish(py)
    }

    /// `closest(key, n)` for each key (without the GIL); all arguments are checked first.
    fn closest_many<'py>(
        &self,
        py: Python<'py>,
        keys: Vec<Bound<'py, PyBytes>>,
        n: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let keys: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
        let mut lists = Vec::with_capacity(keys.len());
        self.closest_chunks(py, &keys, n, |found, size, answers| {
            for answer in 0..answers {
                let mut sink = ListSink::new(size);
                for peer in &found[answer * size..(answer + 1) * size] {
                    sink.found(peer);
                }
                lists.push(sink.finish(py)?);
            }
            Ok(())
        })?;
        PyList::new(py, lists)
    }

    /// `closest_many` with the answers back to back in one list (each `min(n, len)`
    /// peers long), for bulk callers.
    fn closest_many_flat<'py>(
        &self,
        py: Python<'py>,
        keys: Vec<Bound<'py, PyBytes>>,
        n: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let keys: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
        let mut sink: Option<ListSink> = None;
        self.closest_chunks(py, &keys, n, |found, size, _| {
            let sink = sink.get_or_insert_with(|| ListSink::new(keys.len() * size));
            for peer in found {
                sink.found(peer);
            }
            Ok(())
        })?;
        match sink {
            Some(sink) => sink.finish(py),
            None => Ok(PyList::empty(py)),
        }
    }

    /// Record that a lookup refreshed a bucket (given by index, or by a key inside it).
    fn mark_refreshed(
        &mut self,
        py: Python<'_>,
        bucket: &Bound<'_, PyAny>,
        now: f64,
    ) -> PyResult<()> {
        let result = match bucket.cast::<PyBytes>() {
            Ok(key) => self.inner.mark_refreshed_key(key.as_bytes(), now),
            Err(_) => self.inner.mark_refreshed(bucket.extract::<i64>()?, now),
        };
        result.map_err(|error| to_python_error(py, error))
    }

    /// Buckets not refreshed for `interval` seconds, up to one past the deepest
    /// non-empty bucket; never-refreshed buckets are stale.
    fn stale_buckets(&self, py: Python<'_>, now: f64, interval: f64) -> PyResult<Vec<usize>> {
        self.inner
            .stale_buckets(now, interval)
            .map_err(|error| to_python_error(py, error))
    }

    /// A lookup target in bucket `index`: our key's first `index` bits, the next bit
    /// flipped, the rest from the 32 `random_bytes`.
    fn random_key_for_bucket<'py>(
        &self,
        py: Python<'py>,
        index: i64,
        random_bytes: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        let key = self
            .inner
            .random_key_for_bucket(index, random_bytes)
            .map_err(|error| to_python_error(py, error))?;
        Ok(PyBytes::new(py, &key))
    }
}

/// The Kademlia key of a peer: SHA-256 of its peer ID bytes (32 bytes).
#[pyfunction]
fn kad_key<'py>(py: Python<'py>, peer_id: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &routing::kad_key(peer_id))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PyRoutingTable>()?;
    module.add_function(wrap_pyfunction!(kad_key, module)?)?;
    Ok(())
}
