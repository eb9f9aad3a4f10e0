//! Glue for `neonet_core::signal_router`: the `SignalRouter` class, with the same
//! results and errors as the pure twin `neonet.core.signal_router`. The frames not
//! taken come back as the caller's own bytes objects.

use neonet_core::signal_router::{self as core, Failed};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::to_python_error;

type FailedTuple<'py> = (u64, u64, Bound<'py, PyBytes>, Bound<'py, PyBytes>);

fn failed_tuple(py: Python<'_>, failed: Failed) -> FailedTuple<'_> {
    (
        failed.stream,
        failed.rid,
        PyBytes::new(py, &failed.to),
        PyBytes::new(py, &failed.payload),
    )
}

fn failed_list(py: Python<'_>, failed: Vec<Failed>) -> Vec<FailedTuple<'_>> {
    failed
        .into_iter()
        .map(|item| failed_tuple(py, item))
        .collect()
}

fn pick<'py>(bodies: &[Bound<'py, PyBytes>], indices: Vec<usize>) -> Vec<Bound<'py, PyBytes>> {
    indices
        .into_iter()
        .map(|index| bodies[index].clone())
        .collect()
}

/// The sending SSN's per-read SIGNAL -> FORWARD engine (see `neonet.core.signal_router`).
#[pyclass(module = "neonet._native")]
pub struct SignalRouter {
    inner: core::SignalRouter,
}

#[pymethods]
impl SignalRouter {
    #[new]
    fn new(
        py: Python<'_>,
        max_payload: usize,
        timeout: f64,
        max_pending: usize,
        max_routes: usize,
    ) -> PyResult<Self> {
        core::SignalRouter::new(max_payload, timeout, max_pending, max_routes)
            .map(|inner| SignalRouter { inner })
            .map_err(|error| to_python_error(py, error))
    }

    fn __len__(&self) -> usize {
        self.inner.pending_count()
    }

    #[getter]
    fn routes(&self) -> usize {
        self.inner.route_count()
    }

    fn set_route(&mut self, py: Python<'_>, peer: &[u8], member: u64) -> PyResult<()> {
        self.inner
            .set_route(peer, member)
            .map_err(|error| to_python_error(py, error))
    }

    fn drop_route(&mut self, peer: &[u8]) {
        self.inner.drop_route(peer);
    }

    fn open_link(&mut self, member: u64, link: u64) {
        self.inner.open_link(member, link);
    }

    fn close_link<'py>(&mut self, py: Python<'py>, link: u64) -> Vec<FailedTuple<'py>> {
        failed_list(py, self.inner.close_link(link))
    }

    #[allow(clippy::type_complexity)]
    fn route<'py>(
        &mut self,
        py: Python<'py>,
        stream: u64,
        sender: &[u8],
        bodies: Vec<Bound<'py, PyBytes>>,
        budget: usize,
        now: f64,
    ) -> PyResult<(
        Vec<(u64, Bound<'py, PyBytes>)>,
        Vec<Bound<'py, PyBytes>>,
        usize,
    )> {
        let slices: Vec<&[u8]> = bodies.iter().map(|body| body.as_bytes()).collect();
        let routed = self
            .inner
            .route(stream, sender, &slices, budget, now)
            .map_err(|error| to_python_error(py, error))?;
        let forwards = routed
            .forwards
            .into_iter()
            .map(|(link, blob)| (link, PyBytes::new(py, &blob)))
            .collect();
        Ok((forwards, pick(&bodies, routed.rest), routed.taken))
    }

    #[allow(clippy::type_complexity)]
    fn answer<'py>(
        &mut self,
        py: Python<'py>,
        link: u64,
        bodies: Vec<Bound<'py, PyBytes>>,
    ) -> (
        Vec<(u64, Bound<'py, PyBytes>, usize)>,
        Vec<Bound<'py, PyBytes>>,
    ) {
        let slices: Vec<&[u8]> = bodies.iter().map(|body| body.as_bytes()).collect();
        let answered = self.inner.answer(link, &slices);
        let answers = answered
            .answers
            .into_iter()
            .map(|(stream, blob, count)| (stream, PyBytes::new(py, &blob), count))
            .collect();
        (answers, pick(&bodies, answered.rest))
    }

    #[allow(clippy::type_complexity)]
    fn deliver<'py>(
        &self,
        py: Python<'py>,
        bodies: Vec<Bound<'py, PyBytes>>,
    ) -> (
        Vec<(
            Bound<'py, PyBytes>,
            Bound<'py, PyBytes>,
            Bound<'py, PyBytes>,
            Vec<usize>,
        )>,
        Vec<Bound<'py, PyBytes>>,
    ) {
        let slices: Vec<&[u8]> = bodies.iter().map(|body| body.as_bytes()).collect();
        let (deliveries, rest) = self.inner.deliver(&slices);
        let groups = deliveries
            .into_iter()
            .map(|delivery| {
                (
                    PyBytes::new(py, &delivery.to),
                    PyBytes::new(py, &delivery.incoming),
                    PyBytes::new(py, &delivery.forwarded),
                    delivery.taken,
                )
            })
            .collect();
        (groups, pick(&bodies, rest))
    }

    fn take<'py>(&mut self, py: Python<'py>, link: u64, rid: u64) -> Option<FailedTuple<'py>> {
        self.inner
            .take(link, rid)
            .map(|failed| failed_tuple(py, failed))
    }

    fn expire<'py>(&mut self, py: Python<'py>, now: f64) -> Vec<FailedTuple<'py>> {
        failed_list(py, self.inner.expire(now))
    }
}

pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<SignalRouter>()
}
