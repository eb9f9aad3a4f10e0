//! Glue for the connection data path: `NoiseTransport`, `YamuxConnection` and
//! `NoiseYamuxConnection` (crates/neonet-core `noise_transport`, `yamux`, `noise_yamux`).
//!
//! The classes mirror their pure twins in `neonet.core.noise_transport`,
//! `neonet.core.yamux` and `neonet.core.noise_yamux`: same constructors, methods,
//! events (instances of the pure module's event dataclasses), statistics and errors.
//! Bytes-like arguments are read in place (a `bytes` object, or any buffer; non-byte
//! items are taken as raw bytes, as `memoryview(x).cast("B")` would). Calls that
//! encrypt or decrypt at least `DETACH_THRESHOLD` bytes of immutable input release the
//! GIL; short calls keep it, since per-call overhead matters on this path.

use crate::to_python_error;
use neonet_core::noise_transport::{encrypted_size, write_slice, NoiseTransport};
use neonet_core::noise_yamux::NoiseYamuxConnection;
use neonet_core::yamux::{Config, Event, YamuxConnection};
use neonet_core::Error;
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyInt, PyList, PyTuple};
use std::mem::MaybeUninit;

/// Encryption or decryption of this many bytes or more runs without the GIL.
const DETACH_THRESHOLD: usize = 64 * 1024;
/// A decryption buffer up to this size is kept between calls (a bigger one, after an
/// unusually large read, is released). Reallocating per call costs page faults.
const KEPT_SCRATCH_CAPACITY: usize = 4 << 20;

/// Call `action` with the bytes of a bytes-like object, read in place where possible.
/// `immutable` tells whether nothing else can change them while the GIL is released.
fn with_bytes<R>(
    value: &Bound<'_, PyAny>,
    action: impl FnOnce(&[u8], bool) -> PyResult<R>,
) -> PyResult<R> {
    if let Ok(bytes) = value.cast_exact::<PyBytes>() {
        return action(bytes.as_bytes(), true);
    }
    let buffer = PyUntypedBuffer::get(value)?;
    if buffer.is_c_contiguous() {
        // SAFETY: the buffer stays exported (so it cannot be resized or freed) until
        // `buffer` drops, and the GIL is held while the slice is read (immutable=false
        // keeps the callers from releasing it).
        let slice = unsafe {
            std::slice::from_raw_parts(buffer.buf_ptr() as *const u8, buffer.len_bytes())
        };
        return action(slice, false);
    }
    drop(buffer);
    // A strided view: let Python gather it into one bytes object.
    let gathered = value.py().get_type::<PyBytes>().call1((value,))?;
    let bytes = gathered.cast_exact::<PyBytes>()?;
    action(bytes.as_bytes(), true)
}

/// A new bytes object of `size` bytes, all written by `fill`; unlike `PyBytes::new_with`
/// the memory is not zeroed first (these buffers are large and `fill` writes them all).
fn new_bytes<'py>(
    py: Python<'py>,
    size: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> PyResult<()>,
) -> PyResult<Bound<'py, PyBytes>> {
    let length = ffi::Py_ssize_t::try_from(size)
        .map_err(|_| PyValueError::new_err("output too large for one bytes object"))?;
    // SAFETY: PyBytes_FromStringAndSize(NULL, n) returns a new bytes object (or NULL with
    // an exception set) whose n-byte buffer is ours to fill until it is shared; it is not
    // shared before `fill` returns, and on error it is dropped unseen.
    unsafe {
        let object = Bound::from_owned_ptr_or_err(
            py,
            ffi::PyBytes_FromStringAndSize(std::ptr::null(), length),
        )?
        .cast_into_unchecked::<PyBytes>();
        let buffer = ffi::PyBytes_AsString(object.as_ptr()).cast::<MaybeUninit<u8>>();
        fill(std::slice::from_raw_parts_mut(buffer, size))?;
        Ok(object)
    }
}

fn error(py: Python<'_>, error: Error) -> PyErr {
    to_python_error(py, error)
}

/// A Python int as i64, saturating, so that any out-of-range id or amount reaches the
/// engine's own range checks (and their `LocalProtocolError`) like in the pure twin.
/// Only for a value beyond +-2**63 does the error text differ: it shows the saturated
/// value.
struct Integer(i64);

impl<'a, 'py> FromPyObject<'a, 'py> for Integer {
    type Error = PyErr;

    fn extract(value: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match value.extract::<i64>() {
            Ok(number) => Ok(Integer(number)),
            Err(err) => {
                if value.is_instance_of::<PyInt>() {
                    Ok(Integer(if value.gt(0)? { i64::MAX } else { i64::MIN }))
                } else {
                    Err(err)
                }
            }
        }
    }
}

fn nonce_argument(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    value
        .extract::<u64>()
        .map_err(|_| PyValueError::new_err("Noise nonces must be in [0, 2**64 - 1]"))
}

// --- NoiseTransport ---------------------------------------------------------------------

/// The established Noise channel (twin of `neonet.core.noise_transport.NoiseTransport`).
#[pyclass(module = "neonet._native", name = "NoiseTransport")]
pub struct PyNoiseTransport {
    inner: NoiseTransport,
    plaintext: Vec<u8>,
}

#[pymethods]
impl PyNoiseTransport {
    #[new]
    #[pyo3(signature = (send_key, receive_key, *, received = None, send_nonce = None, receive_nonce = None))]
    fn new(
        py: Python<'_>,
        send_key: &Bound<'_, PyAny>,
        receive_key: &Bound<'_, PyAny>,
        received: Option<&Bound<'_, PyAny>>,
        send_nonce: Option<&Bound<'_, PyAny>>,
        receive_nonce: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let send_key = with_bytes(send_key, |bytes, _| Ok(bytes.to_vec()))?;
        let receive_key = with_bytes(receive_key, |bytes, _| Ok(bytes.to_vec()))?;
        let received = match received {
            Some(value) => with_bytes(value, |bytes, _| Ok(bytes.to_vec()))?,
            None => Vec::new(),
        };
        let send_nonce = send_nonce.map(nonce_argument).transpose()?.unwrap_or(0);
        let receive_nonce = receive_nonce.map(nonce_argument).transpose()?.unwrap_or(0);
        if send_key.len() != 32 || receive_key.len() != 32 {
            return Err(PyValueError::new_err(
                "a Noise transport key must be 32 bytes",
            ));
        }
        let inner = NoiseTransport::new(
            &send_key,
            &receive_key,
            &received,
            send_nonce,
            receive_nonce,
        )
        .map_err(|err| error(py, err))?;
        Ok(Self {
            inner,
            plaintext: Vec::new(),
        })
    }

    #[getter]
    fn messages_sent(&self) -> u64 {
        self.inner.messages_sent()
    }

    #[getter]
    fn messages_received(&self) -> u64 {
        self.inner.messages_received()
    }

    #[getter]
    fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    /// Move the channel state to a new transport; this one then refuses all use.
    fn take(&mut self, py: Python<'_>) -> PyResult<Self> {
        let inner = self.inner.take().map_err(|err| error(py, err))?;
        Ok(Self {
            inner,
            plaintext: Vec::new(),
        })
    }

    /// Length-prefixed transport messages carrying `plaintext` (b"" for empty input).
    fn encrypt<'py>(
        &mut self,
        py: Python<'py>,
        plaintext: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let inner = &mut self.inner;
        with_bytes(plaintext, |data, immutable| {
            inner
                .check_encrypt(data.len())
                .map_err(|err| error(py, err))?;
            new_bytes(py, encrypted_size(data.len()), |out| {
                let result = if immutable && data.len() >= DETACH_THRESHOLD {
                    py.detach(|| inner.encrypt_into(data, out))
                } else {
                    inner.encrypt_into(data, out)
                };
                result.map_err(|err| error(py, err))
            })
        })
    }

    /// All plaintext decryptable now (b"" if none), after buffering `data`.
    fn receive_data<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let Self { inner, plaintext } = self;
        plaintext.clear();
        with_bytes(data, |bytes, immutable| {
            let result = if immutable && bytes.len() >= DETACH_THRESHOLD {
                py.detach(|| inner.receive_data(bytes, plaintext))
            } else {
                inner.receive_data(bytes, plaintext)
            };
            result.map_err(|err| error(py, err))
        })?;
        let out = PyBytes::new(py, plaintext);
        if plaintext.capacity() > KEPT_SCRATCH_CAPACITY {
            *plaintext = Vec::new();
        }
        Ok(out)
    }
}

// --- events -----------------------------------------------------------------------------

/// The pure module's event classes and statistics class, looked up once.
struct YamuxClasses {
    stream_opened: Py<PyAny>,
    stream_acknowledged: Py<PyAny>,
    data_received: Py<PyAny>,
    stream_ended: Py<PyAny>,
    stream_reset: Py<PyAny>,
    send_window_increased: Py<PyAny>,
    pong_received: Py<PyAny>,
    go_away_received: Py<PyAny>,
    stream_closed: Py<PyAny>,
    statistics: Py<PyAny>,
    config: Py<PyAny>,
}

static YAMUX_CLASSES: PyOnceLock<YamuxClasses> = PyOnceLock::new();

fn yamux_classes(py: Python<'_>) -> PyResult<&'static YamuxClasses> {
    YAMUX_CLASSES.get_or_try_init(py, || {
        let module = py.import("neonet.core.yamux")?;
        let class = |name: &str| -> PyResult<Py<PyAny>> { Ok(module.getattr(name)?.unbind()) };
        Ok(YamuxClasses {
            stream_opened: class("StreamOpened")?,
            stream_acknowledged: class("StreamAcknowledged")?,
            data_received: class("DataReceived")?,
            stream_ended: class("StreamEnded")?,
            stream_reset: class("StreamReset")?,
            send_window_increased: class("SendWindowIncreased")?,
            pong_received: class("PongReceived")?,
            go_away_received: class("GoAwayReceived")?,
            stream_closed: class("StreamClosed")?,
            statistics: class("YamuxStatistics")?,
            config: class("YamuxConfig")?,
        })
    })
}

/// The payload of the run of adjacent `DataReceived` events of one stream that starts at
/// `events[0]`, as one bytes object, and the number of events in the run.
fn data_run<'py>(
    py: Python<'py>,
    yamux: &YamuxConnection,
    events: &[Event],
    stream_id: u32,
) -> PyResult<(Bound<'py, PyBytes>, usize)> {
    let mut ranges = Vec::new();
    for event in events {
        match *event {
            Event::DataReceived {
                stream_id: id,
                start,
                end,
            } if id == stream_id => ranges.push((start, end)),
            _ => break,
        }
    }
    let count = ranges.len();
    if let [(start, end)] = ranges[..] {
        return Ok((PyBytes::new(py, yamux.payload(start, end)), 1));
    }
    let total = ranges.iter().map(|(start, end)| end - start).sum();
    let joined = new_bytes(py, total, |out| {
        let mut position = 0;
        for (start, end) in ranges {
            write_slice(&mut out[position..], yamux.payload(start, end));
            position += end - start;
        }
        Ok(())
    })?;
    Ok((joined, count))
}

/// The events of the engine's last receive call, as the pure module's dataclasses.
/// Adjacent data frames of one stream become one `DataReceived`, as in the pure twin.
fn events_to_python<'py>(py: Python<'py>, yamux: &YamuxConnection) -> PyResult<Bound<'py, PyList>> {
    let classes = yamux_classes(py)?;
    let list = PyList::empty(py);
    let events = yamux.events();
    let mut index = 0;
    while index < events.len() {
        let object = match events[index] {
            Event::DataReceived { stream_id, .. } => {
                let (payload, count) = data_run(py, yamux, &events[index..], stream_id)?;
                index += count - 1;
                classes.data_received.bind(py).call1((stream_id, payload))?
            }
            Event::StreamOpened(id) => classes.stream_opened.bind(py).call1((id,))?,
            Event::StreamAcknowledged(id) => classes.stream_acknowledged.bind(py).call1((id,))?,
            Event::StreamEnded(id) => classes.stream_ended.bind(py).call1((id,))?,
            Event::StreamReset(id) => classes.stream_reset.bind(py).call1((id,))?,
            Event::SendWindowIncreased(id) => {
                classes.send_window_increased.bind(py).call1((id,))?
            }
            Event::PongReceived(opaque) => classes.pong_received.bind(py).call1((opaque,))?,
            Event::GoAwayReceived(code) => classes.go_away_received.bind(py).call1((code,))?,
            Event::StreamClosed(id) => classes.stream_closed.bind(py).call1((id,))?,
        };
        list.append(object)?;
        index += 1;
    }
    Ok(list)
}

fn config_from_python(py: Python<'_>, config: Option<&Bound<'_, PyAny>>) -> PyResult<Config> {
    let default;
    let config = match config {
        Some(value) if !value.is_none() => value,
        _ => {
            default = yamux_classes(py)?.config.bind(py).call0()?;
            &default
        }
    };
    let number = |name: &str| -> PyResult<u64> { config.getattr(name)?.extract::<u64>() };
    let count = |name: &str| -> PyResult<usize> {
        let value = number(name)?;
        Ok(usize::try_from(value).unwrap_or(usize::MAX))
    };
    Ok(Config {
        initial_window: number("initial_window")?,
        max_receive_window: number("max_receive_window")?,
        max_streams: count("max_streams")?,
        max_ack_backlog: count("max_ack_backlog")?,
        max_frame_payload: number("max_frame_payload")?,
    })
}

// --- YamuxConnection --------------------------------------------------------------------

/// The engine behind a `YamuxConnection` object: bare yamux, or yamux inside Noise.
enum Engine {
    Plain(Box<YamuxConnection>),
    Noise(Box<NoiseYamuxConnection>),
}

impl Engine {
    fn yamux(&mut self) -> &mut YamuxConnection {
        match self {
            Engine::Plain(yamux) => yamux,
            Engine::Noise(connection) => &mut connection.yamux,
        }
    }

    fn yamux_ref(&self) -> &YamuxConnection {
        match self {
            Engine::Plain(yamux) => yamux,
            Engine::Noise(connection) => &connection.yamux,
        }
    }
}

/// One side of a yamux session (twin of `neonet.core.yamux.YamuxConnection`).
#[pyclass(module = "neonet._native", name = "YamuxConnection", subclass)]
pub struct PyYamuxConnection {
    engine: Engine,
}

impl PyYamuxConnection {
    fn receive_plain<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let yamux = self.engine.yamux();
        with_bytes(data, |bytes, _| {
            yamux.receive_data(bytes).map_err(|err| error(py, err))
        })?;
        events_to_python(py, yamux)
    }

    fn plain_output<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let yamux = self.engine.yamux();
        let output = PyBytes::new(py, yamux.pending_output());
        yamux.clear_output();
        output
    }
}

#[pymethods]
impl PyYamuxConnection {
    #[new]
    #[pyo3(signature = (*, is_client, config = None))]
    fn new(py: Python<'_>, is_client: bool, config: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let config = config_from_python(py, config)?;
        let yamux = YamuxConnection::new(is_client, config).map_err(|err| error(py, err))?;
        Ok(Self {
            engine: Engine::Plain(Box::new(yamux)),
        })
    }

    /// Parse every whole frame in `data` (plus any carried-over partial frame).
    fn receive_data<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.receive_plain(py, data)
    }

    /// Return and clear everything queued for the peer.
    fn data_to_send<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        self.plain_output(py)
    }

    /// Whether frames are queued for the peer (`data_to_send` would return bytes).
    #[getter]
    fn has_output(&self) -> bool {
        self.engine.yamux_ref().has_output()
    }

    /// Open an outbound stream and queue its SYN; data may be sent before the ACK.
    fn open_stream(&mut self, py: Python<'_>) -> PyResult<u32> {
        self.engine
            .yamux()
            .open_stream()
            .map_err(|err| error(py, err))
    }

    /// Queue as much of `data` as the send window allows; return how many bytes.
    fn send_data(
        &mut self,
        py: Python<'_>,
        stream_id: Integer,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let Integer(stream_id) = stream_id;
        let yamux = self.engine.yamux();
        with_bytes(data, |bytes, _| {
            yamux
                .send_data(stream_id, bytes)
                .map_err(|err| error(py, err))
        })
    }

    /// Bytes we may send now (0 once the stream is closed for writing or released).
    fn send_window(&self, py: Python<'_>, stream_id: Integer) -> PyResult<u64> {
        let Integer(stream_id) = stream_id;
        self.engine
            .yamux_ref()
            .send_window(stream_id)
            .map_err(|err| error(py, err))
    }

    /// Whether `stream_id` is live (opened and not yet released).
    fn stream_is_open(&self, stream_id: Integer) -> PyResult<bool> {
        Ok(self.engine.yamux_ref().stream_is_open(stream_id.0))
    }

    /// The application took `amount` received bytes: give the peer credit when due.
    fn consume(&mut self, py: Python<'_>, stream_id: Integer, amount: Integer) -> PyResult<()> {
        let Integer(stream_id) = stream_id;
        let Integer(amount) = amount;
        self.engine
            .yamux()
            .consume(stream_id, amount)
            .map_err(|err| error(py, err))
    }

    /// Send FIN: our write side is done. A released stream is left alone.
    fn close_stream(&mut self, py: Python<'_>, stream_id: Integer) -> PyResult<()> {
        let Integer(stream_id) = stream_id;
        self.engine
            .yamux()
            .close_stream(stream_id)
            .map_err(|err| error(py, err))
    }

    /// Send RST: abort both directions. A released stream is left alone.
    fn reset_stream(&mut self, py: Python<'_>, stream_id: Integer) -> PyResult<()> {
        let Integer(stream_id) = stream_id;
        self.engine
            .yamux()
            .reset_stream(stream_id)
            .map_err(|err| error(py, err))
    }

    /// Queue a ping; the peer's answer arrives as `PongReceived(opaque)`.
    fn ping(&mut self, py: Python<'_>, opaque: Integer) -> PyResult<()> {
        let Integer(opaque) = opaque;
        self.engine
            .yamux()
            .ping(opaque)
            .map_err(|err| error(py, err))
    }

    /// Announce session termination; afterwards inbound SYNs are refused.
    #[pyo3(signature = (code = Integer(0)))]
    fn go_away(&mut self, py: Python<'_>, code: Integer) -> PyResult<()> {
        let Integer(code) = code;
        self.engine
            .yamux()
            .go_away(code)
            .map_err(|err| error(py, err))
    }

    /// A `neonet.core.yamux.YamuxStatistics` snapshot.
    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let statistics = self.engine.yamux_ref().statistics();
        let arguments = PyTuple::new(
            py,
            [
                statistics.open_streams,
                statistics.inbound_streams,
                statistics.outbound_streams,
                statistics.ack_backlog,
                statistics.bytes_buffered,
                statistics.partial_frame_bytes,
            ],
        )?;
        yamux_classes(py)?.statistics.bind(py).call1(arguments)
    }
}

// --- NoiseYamuxConnection ---------------------------------------------------------------

/// Yamux inside the Noise transport, fed whole socket reads (twin of
/// `neonet.core.noise_yamux.NoiseYamuxConnection`).
#[pyclass(module = "neonet._native", name = "NoiseYamuxConnection", extends = PyYamuxConnection)]
pub struct PyNoiseYamuxConnection;

fn noise_engine(base: &mut PyYamuxConnection) -> &mut NoiseYamuxConnection {
    match &mut base.engine {
        Engine::Noise(connection) => connection,
        Engine::Plain(_) => unreachable!("a NoiseYamuxConnection always holds a Noise engine"),
    }
}

#[pymethods]
impl PyNoiseYamuxConnection {
    #[new]
    #[pyo3(signature = (noise, *, is_client, config = None))]
    fn new(
        py: Python<'_>,
        mut noise: PyRefMut<'_, PyNoiseTransport>,
        is_client: bool,
        config: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let config = config_from_python(py, config)?;
        let yamux = YamuxConnection::new(is_client, config).map_err(|err| error(py, err))?;
        let noise = noise.inner.take().map_err(|err| error(py, err))?;
        let engine = Engine::Noise(Box::new(NoiseYamuxConnection::new(noise, yamux)));
        Ok(PyClassInitializer::from(PyYamuxConnection { engine }).add_subclass(Self))
    }

    /// Decrypt `data` (any chunk of the byte stream) and parse every whole frame.
    fn receive_data<'py>(
        slf: PyRefMut<'py, Self>,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut base = slf.into_super();
        let connection = noise_engine(&mut base);
        with_bytes(data, |bytes, immutable| {
            let result = if immutable && bytes.len() >= DETACH_THRESHOLD {
                py.detach(|| connection.receive_data(bytes))
            } else {
                connection.receive_data(bytes)
            };
            result.map_err(|err| error(py, err))
        })?;
        events_to_python(py, &connection.yamux)
    }

    /// Parse bytes that are already plaintext (read past a negotiation, say).
    fn receive_plaintext<'py>(
        slf: PyRefMut<'py, Self>,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        slf.into_super().receive_plain(py, data)
    }

    /// Return and clear everything queued for the peer, framed and encrypted.
    fn data_to_send<'py>(
        slf: PyRefMut<'py, Self>,
        py: Python<'py>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut base = slf.into_super();
        let connection = noise_engine(&mut base);
        let size = connection.output_size();
        if size == 0 {
            return Ok(PyBytes::new(py, b""));
        }
        if let Err(err) = connection.check_output() {
            connection.discard_output();
            return Err(error(py, err));
        }
        new_bytes(py, size, |out| {
            let result = if size >= DETACH_THRESHOLD {
                py.detach(|| connection.take_output_into(out))
            } else {
                connection.take_output_into(out)
            };
            result.map_err(|err| error(py, err))
        })
    }
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PyNoiseTransport>()?;
    module.add_class::<PyYamuxConnection>()?;
    module.add_class::<PyNoiseYamuxConnection>()?;
    Ok(())
}
