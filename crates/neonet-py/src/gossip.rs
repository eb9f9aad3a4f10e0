//! Glue for `neonet_core::gossip`: `SeenCache`, `MessageCache` and `MeshState` classes.
//!
//! Same interface as the pure twins in `neonet.core.gossip` (which also defines the
//! shared value types `GossipParams` and `HeartbeatDecision`). Peer IDs are kept as the
//! caller's bytes objects, indexed by the core's peer handles, so results hand back the
//! very objects the caller passed in (as the pure twin does). Batch calls and the heartbeat
//! copy their input into Rust buffers and release the GIL while the core works; another
//! thread calling the same object meanwhile gets PyO3's "already borrowed" RuntimeError.
//!
//! `gossip/batch.rs` holds the buffers and the core call behind the batch publish methods.

mod batch;

use neonet_core::gossip as core;
use neonet_core::Error;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString, PyTuple, PyType};

use crate::to_python_error;
use batch::BatchBuffers;

fn fail(py: Python<'_>) -> impl Fn(Error) -> PyErr + '_ {
    move |error| to_python_error(py, error)
}

/// A non-negative int argument: ints that do not fit `u64` are `ValueError` (as in the
/// pure twin, which range-checks them), anything else that is not an int a `TypeError`.
#[derive(Clone, Copy)]
struct Count(u64);

impl<'a, 'py> FromPyObject<'a, 'py> for Count {
    type Error = PyErr;

    fn extract(value: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match value.extract::<u64>() {
            Ok(number) => Ok(Count(number)),
            Err(_) if value.is_instance_of::<PyInt>() => Err(PyValueError::new_err(
                "int argument out of range [0, 2**32)",
            )),
            Err(error) => Err(error),
        }
    }
}

/// Calls `each` with the bytes of every item of `items` (a list fast, else any iterable).
fn for_each_bytes(items: &Bound<'_, PyAny>, mut each: impl FnMut(&[u8])) -> PyResult<()> {
    if let Ok(list) = items.cast::<PyList>() {
        for item in list.iter() {
            each(item.cast::<PyBytes>()?.as_bytes());
        }
    } else {
        for item in items.try_iter()? {
            each(item?.cast::<PyBytes>()?.as_bytes());
        }
    }
    Ok(())
}

/// Byte strings copied back to back, so the core can read them without the GIL.
#[derive(Default)]
struct Arena {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Arena {
    fn push(&mut self, item: &[u8]) {
        self.bytes.extend_from_slice(item);
        self.ends.push(self.bytes.len());
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let item = &self.bytes[start..end];
            start = end;
            item
        })
    }
}

/// A seed: an int in [0, 2**64).
#[derive(Clone, Copy)]
struct Seed(u64);

impl<'a, 'py> FromPyObject<'a, 'py> for Seed {
    type Error = PyErr;

    fn extract(value: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match value.extract::<u64>() {
            Ok(seed) => Ok(Seed(seed)),
            Err(_) if value.is_instance_of::<PyInt>() => {
                Err(PyValueError::new_err("seed must be an int in [0, 2**64)"))
            }
            Err(error) => Err(error),
        }
    }
}

// -----------------------------------------------------------------------------------------
// SeenCache
// -----------------------------------------------------------------------------------------

/// Message IDs seen in the last `ttl` seconds (see `neonet.core.gossip.SeenCache`).
#[pyclass(module = "neonet._native")]
pub struct SeenCache {
    inner: core::SeenCache,
}

#[pymethods]
impl SeenCache {
    #[new]
    #[pyo3(signature = (ttl = 120.0, capacity = Count(262_144)))]
    fn new(py: Python<'_>, ttl: f64, capacity: Count) -> PyResult<Self> {
        Ok(Self {
            inner: core::SeenCache::new(ttl, capacity.0).map_err(fail(py))?,
        })
    }

    /// Seconds an ID is remembered.
    #[getter]
    fn ttl(&self) -> f64 {
        self.inner.ttl()
    }

    /// Most IDs kept at once.
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, msg_id: &Bound<'_, PyAny>) -> bool {
        msg_id
            .cast::<PyBytes>()
            .is_ok_and(|id| self.inner.contains(id.as_bytes()))
    }

    /// Forget IDs seen `ttl` or more seconds before `now`; return how many.
    fn expire(&mut self, py: Python<'_>, now: f64) -> PyResult<usize> {
        self.inner.expire(now).map_err(fail(py))
    }

    /// Remember `msg_id`; True when it is new (not seen within `ttl`).
    fn add(&mut self, py: Python<'_>, msg_id: &[u8], now: f64) -> PyResult<bool> {
        self.inner.add(msg_id, now).map_err(fail(py))
    }

    /// `add` for each ID in order, all at `now`; one bool per ID.
    fn add_many<'py>(
        &mut self,
        py: Python<'py>,
        msg_ids: &Bound<'py, PyAny>,
        now: f64,
    ) -> PyResult<Bound<'py, PyList>> {
        self.inner.expire(now).map_err(fail(py))?;
        let mut arena = Arena::default();
        for_each_bytes(msg_ids, |id| arena.push(id))?;
        let inner = &mut self.inner;
        let mut results = Vec::with_capacity(arena.ends.len());
        py.detach(|| inner.add_many(arena.iter(), now, &mut results))
            .map_err(fail(py))?;
        PyList::new(py, results)
    }

    /// `msg_id in cache` for each ID (as of the latest `now`).
    fn contains_many<'py>(
        &self,
        py: Python<'py>,
        msg_ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut arena = Arena::default();
        for_each_bytes(msg_ids, |id| arena.push(id))?;
        let inner = &self.inner;
        let mut results = Vec::with_capacity(arena.ends.len());
        py.detach(|| inner.contains_many(arena.iter(), &mut results));
        PyList::new(py, results)
    }

    /// `add_many` over the IDs packed in `msg_ids` (`id_len` bytes each, back to back);
    /// byte `i` of the result is 1 if ID `i` was new, else 0.
    fn add_packed<'py>(
        &mut self,
        py: Python<'py>,
        msg_ids: &[u8],
        id_len: Count,
        now: f64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let id_len = check_packed(msg_ids, id_len)?;
        self.inner.expire(now).map_err(fail(py))?;
        let inner = &mut self.inner;
        let mut results = Vec::with_capacity(msg_ids.len() / id_len);
        py.detach(|| inner.add_many(msg_ids.chunks_exact(id_len), now, &mut results))
            .map_err(fail(py))?;
        Ok(mask(py, &results))
    }

    /// `contains_many` over the IDs packed in `msg_ids` (`id_len` bytes each, back to
    /// back); byte `i` of the result is 1 if ID `i` is in the cache, else 0.
    fn contains_packed<'py>(
        &self,
        py: Python<'py>,
        msg_ids: &[u8],
        id_len: Count,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let id_len = check_packed(msg_ids, id_len)?;
        let inner = &self.inner;
        let mut results = Vec::with_capacity(msg_ids.len() / id_len);
        py.detach(|| inner.contains_many(msg_ids.chunks_exact(id_len), &mut results));
        Ok(mask(py, &results))
    }
}

/// The ID length of a packed batch: `msg_ids` must hold whole `id_len`-byte IDs (the
/// pure twin's `_check_packed`, same errors).
fn check_packed(msg_ids: &[u8], id_len: Count) -> PyResult<usize> {
    if id_len.0 < 1 || id_len.0 >= 1 << 32 {
        return Err(PyValueError::new_err("id_len out of range [1, 2**32)"));
    }
    let id_len = id_len.0 as usize;
    if msg_ids.len() % id_len != 0 {
        return Err(PyValueError::new_err(
            "msg_ids must hold a whole number of id_len-byte IDs",
        ));
    }
    Ok(id_len)
}

/// One byte per answer: 1 for true, 0 for false.
fn mask<'py>(py: Python<'py>, answers: &[bool]) -> Bound<'py, PyBytes> {
    PyBytes::new(
        py,
        &answers
            .iter()
            .map(|&answer| u8::from(answer))
            .collect::<Vec<u8>>(),
    )
}

// -----------------------------------------------------------------------------------------
// MessageCache
// -----------------------------------------------------------------------------------------

/// The message cache behind IHAVE/IWANT (see `neonet.core.gossip.MessageCache`).
#[pyclass(module = "neonet._native")]
pub struct MessageCache {
    inner: core::MessageCache<Py<PyBytes>>,
}

#[pymethods]
impl MessageCache {
    #[new]
    #[pyo3(signature = (
        history_length = Count(5),
        gossip_length = Count(3),
        capacity = Count(65_536),
        iwant_peers_per_message = Count(256),
    ))]
    fn new(
        py: Python<'_>,
        history_length: Count,
        gossip_length: Count,
        capacity: Count,
        iwant_peers_per_message: Count,
    ) -> PyResult<Self> {
        let inner = core::MessageCache::new(
            history_length.0,
            gossip_length.0,
            capacity.0,
            iwant_peers_per_message.0,
        )
        .map_err(fail(py))?;
        Ok(Self { inner })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, msg_id: &Bound<'_, PyAny>) -> bool {
        msg_id
            .cast::<PyBytes>()
            .is_ok_and(|id| self.inner.contains(id.as_bytes()))
    }

    /// Cache a message in the newest window; False (and no change) if already cached.
    fn put(&mut self, msg_id: &[u8], topic: &str, message: Bound<'_, PyBytes>) -> bool {
        self.inner.put(msg_id, topic, message.unbind())
    }

    /// The cached message, or None.
    fn get(&self, py: Python<'_>, msg_id: &[u8]) -> Option<Py<PyBytes>> {
        self.inner.get(msg_id).map(|message| message.clone_ref(py))
    }

    /// The message for an IWANT from `peer`, unless it already had it that often.
    fn get_for_peer(
        &mut self,
        py: Python<'_>,
        msg_id: &[u8],
        peer: &[u8],
        max_transmissions: Count,
    ) -> PyResult<Option<Py<PyBytes>>> {
        Ok(self
            .inner
            .get_for_peer(msg_id, peer, max_transmissions.0)
            .map_err(fail(py))?
            .map(|message| message.clone_ref(py)))
    }

    /// IDs of `topic` in the newest `gossip_length` windows, newest first.
    fn gossip_ids<'py>(&self, py: Python<'py>, topic: &str) -> PyResult<Bound<'py, PyList>> {
        PyList::new(
            py,
            self.inner.gossip_ids(topic).map(|id| PyBytes::new(py, id)),
        )
    }

    /// Drop the oldest window (and its messages) and open a new newest one.
    fn shift(&mut self) {
        self.inner.shift();
    }
}

// -----------------------------------------------------------------------------------------
// MeshState
// -----------------------------------------------------------------------------------------

static GOSSIP_PARAMS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static HEARTBEAT_DECISION: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn read_params(params: &Bound<'_, PyAny>) -> PyResult<core::GossipParams> {
    let count = |name: &str| -> PyResult<usize> {
        let Count(value) = params.getattr(name)?.extract::<Count>()?;
        usize::try_from(value).map_err(|_| PyValueError::new_err(format!("{name} out of range")))
    };
    let float = |name: &str| -> PyResult<f64> { params.getattr(name)?.extract::<f64>() };
    Ok(core::GossipParams {
        d: count("d")?,
        d_lo: count("d_lo")?,
        d_hi: count("d_hi")?,
        d_lazy: count("d_lazy")?,
        d_score: count("d_score")?,
        d_out: count("d_out")?,
        gossip_factor: float("gossip_factor")?,
        fanout_ttl: float("fanout_ttl")?,
        prune_backoff: float("prune_backoff")?,
        unsubscribe_backoff: float("unsubscribe_backoff")?,
        backoff_slack: float("backoff_slack")?,
        opportunistic_graft_ticks: count("opportunistic_graft_ticks")?,
        opportunistic_graft_peers: count("opportunistic_graft_peers")?,
        opportunistic_graft_threshold: float("opportunistic_graft_threshold")?,
        gossip_threshold: float("gossip_threshold")?,
        publish_threshold: float("publish_threshold")?,
        max_peers: count("max_peers")?,
        max_topics: count("max_topics")?,
        max_topics_per_peer: count("max_topics_per_peer")?,
        max_peers_per_topic: count("max_peers_per_topic")?,
        max_backoffs: count("max_backoffs")?,
    })
}

/// Mesh, fan-out, subscriptions, scores and backoffs (see `neonet.core.gossip.MeshState`).
#[pyclass(module = "neonet._native")]
pub struct MeshState {
    inner: core::MeshState,
    params: Py<PyAny>,
    peers: Vec<Option<Py<PyBytes>>>, // the caller's ID objects, by peer handle
    batch: BatchBuffers,
}

impl MeshState {
    fn peer_object<'py>(&self, py: Python<'py>, handle: core::PeerHandle) -> Bound<'py, PyBytes> {
        match self.peers.get(handle as usize) {
            Some(Some(object)) => object.bind(py).clone(),
            _ => PyBytes::new(py, self.inner.peer_id(handle)),
        }
    }

    fn peer_list<'py>(
        &self,
        py: Python<'py>,
        handles: &[core::PeerHandle],
    ) -> PyResult<Bound<'py, PyList>> {
        PyList::new(
            py,
            handles.iter().map(|&handle| self.peer_object(py, handle)),
        )
    }
}

#[pymethods]
impl MeshState {
    #[new]
    #[pyo3(signature = (params = None))]
    fn new(py: Python<'_>, params: Option<Bound<'_, PyAny>>) -> PyResult<Self> {
        let params = match params {
            Some(params) => params,
            None => GOSSIP_PARAMS
                .import(py, "neonet.core.gossip", "GossipParams")?
                .call0()?,
        };
        let inner = core::MeshState::new(read_params(&params)?).map_err(fail(py))?;
        Ok(Self {
            inner,
            params: params.unbind(),
            peers: Vec::new(),
            batch: BatchBuffers::default(),
        })
    }

    /// The parameters this state was made with.
    #[getter]
    fn params(&self, py: Python<'_>) -> Py<PyAny> {
        self.params.clone_ref(py)
    }

    /// A peer speaking `protocol` (floodsub or meshsub ID) connected.
    #[pyo3(signature = (peer, outbound, protocol, explicit = false))]
    fn add_peer(
        &mut self,
        py: Python<'_>,
        peer: Bound<'_, PyBytes>,
        outbound: bool,
        protocol: &str,
        explicit: bool,
    ) -> PyResult<()> {
        let handle = self
            .inner
            .add_peer(peer.as_bytes(), outbound, protocol, explicit)
            .map_err(fail(py))? as usize;
        if self.peers.len() <= handle {
            self.peers.resize_with(handle + 1, || None);
        }
        self.peers[handle] = Some(peer.unbind());
        Ok(())
    }

    /// A peer disconnected: it leaves every subscription, mesh and fan-out.
    fn remove_peer(&mut self, py: Python<'_>, peer: &[u8]) -> PyResult<()> {
        let handle = self.inner.remove_peer(peer).map_err(fail(py))? as usize;
        if let Some(slot) = self.peers.get_mut(handle) {
            *slot = None;
        }
        Ok(())
    }

    /// Set a peer's score; unknown peers are ignored, NaN is a ValueError.
    fn set_score(&mut self, py: Python<'_>, peer: &[u8], score: f64) -> PyResult<()> {
        self.inner.set_score(peer, score).map_err(fail(py))
    }

    /// `set_score` for each item, in the mapping's order.
    fn set_scores(&mut self, py: Python<'_>, scores: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(dict) = scores.cast::<PyDict>() {
            for (peer, score) in dict.iter() {
                let score = score.extract::<f64>()?;
                self.inner
                    .set_score(peer.cast::<PyBytes>()?.as_bytes(), score)
                    .map_err(fail(py))?;
            }
            return Ok(());
        }
        for item in scores.call_method0("items")?.try_iter()? {
            let (peer, score) = item?.extract::<(Bound<'_, PyBytes>, f64)>()?;
            self.inner
                .set_score(peer.as_bytes(), score)
                .map_err(fail(py))?;
        }
        Ok(())
    }

    /// The peer announced SUBSCRIBE; False when refused by a bound.
    fn peer_subscribed(&mut self, py: Python<'_>, peer: &[u8], topic: &str) -> PyResult<bool> {
        self.inner.peer_subscribed(peer, topic).map_err(fail(py))
    }

    /// The peer announced UNSUBSCRIBE: it also leaves that topic's mesh and fan-out.
    fn peer_unsubscribed(&mut self, py: Python<'_>, peer: &[u8], topic: &str) -> PyResult<()> {
        self.inner.peer_unsubscribed(peer, topic).map_err(fail(py))
    }

    /// When the backoff of `peer` on `topic` ends, if one is recorded.
    fn backoff_until(&self, peer: &[u8], topic: &str) -> Option<f64> {
        self.inner.backoff_until(peer, topic)
    }

    /// JOIN(topic): build the mesh from fan-out, then subscribers; returns peers to GRAFT.
    fn join<'py>(
        &mut self,
        py: Python<'py>,
        topic: &str,
        now: f64,
        seed: Seed,
    ) -> PyResult<Bound<'py, PyList>> {
        let chosen = self.inner.join(topic, now, seed.0).map_err(fail(py))?;
        self.peer_list(py, &chosen)
    }

    /// LEAVE(topic): returns the PRUNEs (peer, topic, unsubscribe_backoff) to send.
    fn leave<'py>(
        &mut self,
        py: Python<'py>,
        topic: &str,
        now: f64,
    ) -> PyResult<Bound<'py, PyList>> {
        let prunes = self.inner.leave(topic, now).map_err(fail(py))?;
        let items = prunes
            .iter()
            .map(|(handle, topic, backoff)| {
                PyTuple::new(
                    py,
                    [
                        self.peer_object(py, *handle).into_any(),
                        PyString::new(py, topic).into_any(),
                        backoff.into_pyobject(py)?.into_any(),
                    ],
                )
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// An incoming GRAFT (v1.1 rules; refusals back the peer off prune_backoff).
    fn handle_graft(
        &mut self,
        py: Python<'_>,
        peer: &[u8],
        topic: &str,
        now: f64,
    ) -> PyResult<&'static str> {
        Ok(self
            .inner
            .handle_graft(peer, topic, now)
            .map_err(fail(py))?
            .as_str())
    }

    /// An incoming PRUNE: leave the mesh and back off; whether the peer was in the mesh.
    fn handle_prune(
        &mut self,
        py: Python<'_>,
        peer: &[u8],
        topic: &str,
        backoff: Option<f64>,
        now: f64,
    ) -> PyResult<bool> {
        self.inner
            .handle_prune(peer, topic, backoff, now)
            .map_err(fail(py))
    }

    /// One heartbeat: mesh and fan-out maintenance and gossip targets.
    fn heartbeat<'py>(
        &mut self,
        py: Python<'py>,
        now: f64,
        seed: Seed,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inner = &mut self.inner;
        let decision = py
            .detach(|| inner.heartbeat(now, seed.0))
            .map_err(fail(py))?;
        let grafts = decision
            .grafts
            .iter()
            .map(|(handle, topic)| {
                PyTuple::new(
                    py,
                    [
                        self.peer_object(py, *handle).into_any(),
                        PyString::new(py, topic).into_any(),
                    ],
                )
            })
            .collect::<PyResult<Vec<_>>>()?;
        let prunes = decision
            .prunes
            .iter()
            .map(|(handle, topic, backoff)| {
                PyTuple::new(
                    py,
                    [
                        self.peer_object(py, *handle).into_any(),
                        PyString::new(py, topic).into_any(),
                        backoff.into_pyobject(py)?.into_any(),
                    ],
                )
            })
            .collect::<PyResult<Vec<_>>>()?;
        let gossip = PyDict::new(py);
        for (topic, targets) in &decision.gossip {
            gossip.set_item(topic, self.peer_list(py, targets)?)?;
        }
        let expired = PyList::new(py, &decision.fanout_expired)?;
        HEARTBEAT_DECISION
            .import(py, "neonet.core.gossip", "HeartbeatDecision")?
            .call1((
                PyList::new(py, grafts)?,
                PyList::new(py, prunes)?,
                gossip,
                expired,
            ))
    }

    /// Peers to send a message of `topic` to, ascending by ID, never `source`.
    fn publish_targets<'py>(
        &mut self,
        py: Python<'py>,
        topic: &str,
        source: Option<&[u8]>,
        flood_publish: bool,
        now: f64,
        seed: Seed,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut rng = core::SplitMix64::new(seed.0);
        let mut targets = Vec::new();
        self.inner
            .publish_targets(topic, source, flood_publish, now, &mut rng, &mut targets)
            .map_err(fail(py))?;
        self.peer_list(py, &targets)
    }

    /// `publish_targets` for each (topic, source) in order, one random stream.
    fn publish_targets_many<'py>(
        &mut self,
        py: Python<'py>,
        messages: &Bound<'py, PyAny>,
        flood_publish: bool,
        now: f64,
        seed: Seed,
    ) -> PyResult<Bound<'py, PyList>> {
        self.publish_batch(py, messages, flood_publish, now, seed)?;
        let (flat, ends) = (&self.batch.flat, &self.batch.ends);
        let mut start = 0;
        let lists = ends
            .iter()
            .map(|&end| {
                let list = self.peer_list(py, &flat[start..end]);
                start = end;
                list
            })
            .collect::<PyResult<Vec<_>>>();
        self.release_big_batch();
        PyList::new(py, lists?)
    }

    /// `publish_targets_many` with the answers back to back: `(peers, counts)`, the
    /// targets of message `i` are the `counts[i]` peers after those of messages `< i`.
    fn publish_targets_flat<'py>(
        &mut self,
        py: Python<'py>,
        messages: &Bound<'py, PyAny>,
        flood_publish: bool,
        now: f64,
        seed: Seed,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        self.publish_batch(py, messages, flood_publish, now, seed)?;
        let (flat, ends) = (&self.batch.flat, &self.batch.ends);
        let mut start = 0;
        let counts = ends.iter().map(|&end| {
            let count = end - start;
            start = end;
            count
        });
        let answer = (self.peer_list(py, flat), PyList::new(py, counts));
        self.release_big_batch();
        Ok((answer.0?, answer.1?))
    }

    /// Mesh members of `topic` in ascending order ([] unless joined).
    fn mesh_peers<'py>(&self, py: Python<'py>, topic: &str) -> PyResult<Bound<'py, PyList>> {
        self.peer_list(py, &self.inner.mesh_peers(topic))
    }

    /// Fan-out members of `topic` in ascending order.
    fn fanout_peers<'py>(&self, py: Python<'py>, topic: &str) -> PyResult<Bound<'py, PyList>> {
        self.peer_list(py, &self.inner.fanout_peers(topic))
    }

    /// Subscribers of `topic` in ascending order.
    fn topic_peers<'py>(&self, py: Python<'py>, topic: &str) -> PyResult<Bound<'py, PyList>> {
        self.peer_list(py, &self.inner.topic_peers(topic))
    }

    /// Topics we joined, in ascending order.
    fn joined_topics(&self) -> Vec<String> {
        self.inner.joined_topics()
    }

    /// Topics `peer` subscribes to, in ascending order.
    fn peer_topics(&self, py: Python<'_>, peer: &[u8]) -> PyResult<Vec<String>> {
        self.inner.peer_topics(peer).map_err(fail(py))
    }

    /// Known peers.
    fn peer_count(&self) -> usize {
        self.inner.peer_count()
    }

    /// Known topics (subscribed by someone, joined, or with fan-out state).
    fn topic_count(&self) -> usize {
        self.inner.topic_count()
    }
}

/// Adds the gossip classes to `neonet._native`.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<SeenCache>()?;
    module.add_class::<MessageCache>()?;
    module.add_class::<MeshState>()?;
    Ok(())
}
