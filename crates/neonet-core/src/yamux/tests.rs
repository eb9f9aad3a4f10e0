//! Unit tests of the yamux engine.

use super::*;

fn frame(frame_type: u8, flags: u16, stream_id: u32, length: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![VERSION, frame_type];
    out.extend(flags.to_be_bytes());
    out.extend(stream_id.to_be_bytes());
    out.extend(length.to_be_bytes());
    out.extend(payload);
    out
}

fn take_output(connection: &mut YamuxConnection) -> Vec<u8> {
    let output = connection.pending_output().to_vec();
    connection.clear_output();
    output
}

/// Events with payloads resolved, for comparison.
fn receive(connection: &mut YamuxConnection, data: &[u8]) -> Result<Vec<String>, Error> {
    connection.receive_data(data)?;
    Ok(connection
        .events()
        .iter()
        .map(|event| match *event {
            Event::DataReceived {
                stream_id,
                start,
                end,
            } => format!(
                "data {stream_id} {:?}",
                String::from_utf8_lossy(connection.payload(start, end))
            ),
            other => format!("{other:?}"),
        })
        .collect())
}

fn pair() -> (YamuxConnection, YamuxConnection) {
    (
        YamuxConnection::new(true, Config::default()).unwrap(),
        YamuxConnection::new(false, Config::default()).unwrap(),
    )
}

#[test]
fn open_send_echo_close() {
    let (mut client, mut server) = pair();
    let id = client.open_stream().unwrap();
    assert_eq!(id, 1);
    assert_eq!(client.send_data(1, b"hello").unwrap(), 5);
    let wire = take_output(&mut client);
    // The SYN rode on the data frame.
    assert_eq!(wire, frame(TYPE_DATA, FLAG_SYN, 1, 5, b"hello"));
    assert_eq!(
        receive(&mut server, &wire).unwrap(),
        vec!["StreamOpened(1)", "data 1 \"hello\""]
    );
    server.consume(1, 5).unwrap();
    server.send_data(1, b"hello").unwrap();
    server.close_stream(1).unwrap();
    let wire = take_output(&mut server);
    assert_eq!(
        receive(&mut client, &wire).unwrap(),
        vec![
            "StreamAcknowledged(1)",
            "data 1 \"hello\"",
            "StreamEnded(1)"
        ]
    );
    client.close_stream(1).unwrap();
    assert!(!client.stream_is_open(1));
    assert_eq!(client.statistics().open_streams, 1); // until the close is reported
    assert_eq!(receive(&mut client, b"").unwrap(), vec!["StreamClosed(1)"]);
    assert_eq!(client.statistics().open_streams, 0);
    let wire = take_output(&mut client);
    assert_eq!(
        receive(&mut server, &wire).unwrap(),
        vec!["StreamEnded(1)", "StreamClosed(1)"]
    );
}

#[test]
fn byte_by_byte_delivery_matches_whole() {
    let (mut client, _) = pair();
    client.open_stream().unwrap();
    client.send_data(1, &[7u8; 1000]).unwrap();
    client.ping(42).unwrap();
    client.close_stream(1).unwrap();
    let wire = take_output(&mut client);
    let mut whole = YamuxConnection::new(false, Config::default()).unwrap();
    let expected = receive(&mut whole, &wire).unwrap();
    let mut pieces = YamuxConnection::new(false, Config::default()).unwrap();
    let mut got = Vec::new();
    let mut data = Vec::new();
    for byte in &wire {
        pieces.receive_data(std::slice::from_ref(byte)).unwrap();
        for event in pieces.events() {
            match *event {
                Event::DataReceived { start, end, .. } => {
                    data.extend_from_slice(pieces.payload(start, end))
                }
                other => got.push(format!("{other:?}")),
            }
        }
    }
    assert_eq!(data, vec![7u8; 1000]);
    assert_eq!(
        got,
        expected
            .into_iter()
            .filter(|event| !event.starts_with("data"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn violations_queue_go_away_and_kill_the_connection() {
    let (_, mut server) = pair();
    let error = receive(&mut server, &frame(9, 0, 1, 0, b"")).unwrap_err();
    assert_eq!(
        error,
        Error::RemoteProtocol {
            message: "unknown frame type 9".to_string(),
            code: Some(1)
        }
    );
    assert_eq!(
        take_output(&mut server),
        frame(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR, b"")
    );
    assert_eq!(
        receive(&mut server, b"").unwrap_err(),
        Error::LocalProtocol(FAILED_MESSAGE.to_string())
    );
    assert!(server.open_stream().is_err());
}

#[test]
fn oversized_data_is_refused_at_its_header() {
    let (_, mut server) = pair();
    let header = frame(TYPE_DATA, FLAG_SYN, 1, DEFAULT_WINDOW + 1, b"");
    let error = receive(&mut server, &header).unwrap_err();
    assert!(error.to_string().contains("exceeds the window"));
}

#[test]
fn out_of_order_syns_and_reuse() {
    let (_, mut server) = pair();
    assert_eq!(
        receive(&mut server, &frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 5, 0, b"")).unwrap(),
        vec!["StreamOpened(5)"]
    );
    assert_eq!(
        receive(&mut server, &frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0, b"")).unwrap(),
        vec!["StreamOpened(1)"]
    );
    let error = receive(&mut server, &frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0, b""));
    assert!(error.unwrap_err().to_string().contains("which is open"));
}

#[test]
fn window_auto_tuning_doubles_after_a_stall() {
    let (mut client, mut server) = pair();
    client.open_stream().unwrap();
    let sent = client.send_data(1, &vec![0u8; 300 * 1024]).unwrap();
    assert_eq!(sent, DEFAULT_WINDOW as usize);
    let wire = take_output(&mut client);
    server.receive_data(&wire).unwrap();
    server.consume(1, i64::from(DEFAULT_WINDOW)).unwrap();
    let update = take_output(&mut server);
    // ACK (merged nowhere: the server sent no data), then the doubled credit.
    let last = &update[update.len() - HEADER_SIZE..];
    assert_eq!(last[1], TYPE_WINDOW_UPDATE);
    assert_eq!(
        u32::from_be_bytes(last[8..12].try_into().unwrap()),
        2 * DEFAULT_WINDOW
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..3000 {
        let mut connection = YamuxConnection::new(round % 2 == 0, Config::default()).unwrap();
        for _ in 0..8 {
            let length = (next() % 40) as usize;
            let mut data: Vec<u8> = (0..length).map(|_| next() as u8).collect();
            // Mostly valid versions and types, so deeper states are reached.
            if data.len() > 2 {
                data[0] = (next() % 8 == 0) as u8;
                data[1] %= 5;
            }
            if connection.receive_data(&data).is_err() {
                break;
            }
            if next() % 3 == 0 {
                connection.clear_output();
            }
        }
    }
}

#[test]
fn stream_ids_run_out() {
    let config = Config {
        max_ack_backlog: 1000,
        ..Config::default()
    };
    let mut client = YamuxConnection::new(true, config).unwrap();
    client.next_outbound_id = 0xFFFF_FFFD; // skip ahead rather than open two billion
    assert_eq!(client.open_stream().unwrap(), 0xFFFF_FFFD);
    assert_eq!(client.open_stream().unwrap(), 0xFFFF_FFFF);
    assert_eq!(
        client.open_stream().unwrap_err(),
        Error::LimitExceeded("this connection has used up its stream ids".to_string())
    );
}

#[test]
fn config_is_validated() {
    let config = Config {
        initial_window: 1,
        ..Config::default()
    };
    assert!(matches!(
        YamuxConnection::new(true, config),
        Err(Error::InvalidArgument(_))
    ));
}
