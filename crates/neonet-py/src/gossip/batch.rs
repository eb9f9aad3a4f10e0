//! The batch publish calls of `MeshState`: the buffers they copy their (topic, source)
//! pairs and answers into, kept between calls, and the call that fills them.

use neonet_core::gossip as core;
use neonet_core::Error;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::{fail, MeshState, Seed};

/// Buffers of the batch publish calls, kept between calls (a batch of 10,000 messages
/// would otherwise fault in fresh pages for each of them every time).
#[derive(Default)]
pub(super) struct BatchBuffers {
    topics: String,                         // the topics back to back
    topic_ends: Vec<usize>,                 // where each message's topic ends in `topics`
    sources: Vec<u8>,                       // the sources back to back (None: nothing)
    source_ends: Vec<usize>,                // where each message's source ends in `sources`
    has_source: Vec<bool>,                  // whether the message had a source
    pub(super) flat: Vec<core::PeerHandle>, // the answers back to back
    pub(super) ends: Vec<usize>,            // where each message's answer ends in `flat`
}

/// Bytes of buffers a batch call keeps for the next one; bigger ones are dropped.
const BATCH_BUFFERS_KEPT: usize = 4 << 20;

impl BatchBuffers {
    fn clear(&mut self) {
        self.topics.clear();
        self.topic_ends.clear();
        self.sources.clear();
        self.source_ends.clear();
        self.has_source.clear();
        self.flat.clear();
        self.ends.clear();
    }

    fn footprint(&self) -> usize {
        self.topics.capacity()
            + self.sources.capacity()
            + self.has_source.capacity()
            + (self.topic_ends.capacity() + self.source_ends.capacity() + self.ends.capacity())
                * size_of::<usize>()
            + self.flat.capacity() * size_of::<core::PeerHandle>()
    }

    fn take(&mut self, item: Borrowed<'_, '_, PyAny>) -> PyResult<()> {
        let pair = item.cast::<PyTuple>()?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err(
                "messages must be (topic, source) pairs",
            ));
        }
        let topic = pair.get_borrowed_item(0)?;
        self.topics.push_str(topic.cast::<PyString>()?.to_str()?);
        self.topic_ends.push(self.topics.len());
        let source = pair.get_borrowed_item(1)?;
        if source.is_none() {
            self.has_source.push(false);
        } else {
            self.sources
                .extend_from_slice(source.cast::<PyBytes>()?.as_bytes());
            self.has_source.push(true);
        }
        self.source_ends.push(self.sources.len());
        Ok(())
    }

    /// The core's answers for the messages taken, into `flat` and `ends`.
    fn publish(
        &mut self,
        inner: &mut core::MeshState,
        flood_publish: bool,
        now: f64,
        rng: &mut core::SplitMix64,
    ) -> Result<(), Error> {
        let (mut topic_start, mut source_start) = (0, 0);
        for ((&topic_end, &source_end), &present) in self
            .topic_ends
            .iter()
            .zip(&self.source_ends)
            .zip(&self.has_source)
        {
            let topic = &self.topics[topic_start..topic_end];
            let source = present.then(|| &self.sources[source_start..source_end]);
            (topic_start, source_start) = (topic_end, source_end);
            inner.publish_targets(topic, source, flood_publish, now, rng, &mut self.flat)?;
            self.ends.push(self.flat.len());
        }
        Ok(())
    }
}

impl MeshState {
    /// Drop the batch buffers once a call is answered if they grew past what is kept
    /// for the next call, so one huge batch does not pin its buffers until then.
    pub(super) fn release_big_batch(&mut self) {
        if self.batch.footprint() > BATCH_BUFFERS_KEPT {
            self.batch = BatchBuffers::default();
        }
    }

    /// The targets of a batch of (topic, source) pairs, left in `self.batch.flat` with
    /// the end of each message's run in `self.batch.ends`.
    pub(super) fn publish_batch(
        &mut self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        flood_publish: bool,
        now: f64,
        seed: Seed,
    ) -> PyResult<()> {
        if !now.is_finite() {
            return Err(PyValueError::new_err(
                "now must be a finite number of seconds",
            ));
        }
        let mut rng = core::SplitMix64::new(seed.0);
        self.release_big_batch(); // what a failed call before may have left
        let batch = &mut self.batch;
        batch.clear();
        if let Ok(list) = messages.cast::<PyList>() {
            for item in list.iter() {
                batch.take(item.as_borrowed())?;
            }
        } else {
            for item in messages.try_iter()? {
                batch.take(item?.as_borrowed())?;
            }
        }
        let inner = &mut self.inner;
        py.detach(|| batch.publish(inner, flood_publish, now, &mut rng))
            .map_err(fail(py))
    }
}
