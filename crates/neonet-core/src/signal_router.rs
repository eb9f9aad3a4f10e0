//! The sending SSN's per-read signal path: SIGNAL frames in, FORWARD frames out.
//!
//! One call per read of a client's stream (`route`) turns the SIGNAL frames of that
//! read into one blob of FORWARD frames per federation link, for the peers whose SSN
//! this router knows (`set_route` / `open_link`), and keeps a pending record per
//! FORWARD; one call per read of a federation stream (`answer`) turns the FORWARDED
//! frames that answer them into one blob of SIGNAL_SENT frames per client stream.
//! Anything else (another message, a peer without a route, a payload over the cap, a
//! frame this parser does not accept, the caller's budget spent) is handed back by
//! index, untouched, for the caller's general path. `route` and `deliver` take only the
//! PREFIX of a read up to the first frame they do not take: that frame and all after it
//! come back, in order, so that the per-frame path sees them in the order they came (a
//! LOOKUP keeps its place for rate tokens and request slots; nothing after a malformed
//! frame takes effect before the stream closes). Sans-I/O: time is an argument.
//!
//! Wire format: `ssn_wire` (client SIGNAL/SIGNAL_SENT, federation FORWARD/FORWARDED).
//! FORWARD request IDs are drawn above 2**62 so that they never meet the IDs the
//! caller's own federation requests use (1 to 2**62).
//!
//! Twin of `neonet.core.signal_router` (pure Python), checked by a differential test.

use std::collections::{BTreeMap, HashMap};

use crate::ssn_wire::{self, Message, MAX_BLOB, MAX_REQUEST_ID};
use crate::Error;

/// The first FORWARD request ID (the caller's own IDs stay at or below 2**62).
pub const FIRST_ID: u64 = (1 << 62) + 1;

/// A FORWARD that got no FORWARDED: its client's request, for the caller's slow path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub stream: u64,
    pub rid: u64,
    pub to: Vec<u8>,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
struct Pending {
    link: u64,
    deadline: f64,
    request: Failed,
}

/// What `route` did with a read's frames.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Routed {
    /// Per link, in order of first use: the FORWARD frames (each length-prefixed).
    pub forwards: Vec<(u64, Vec<u8>)>,
    /// Indices of the frames not taken, in order.
    pub rest: Vec<usize>,
    /// How many SIGNALs were taken.
    pub taken: usize,
}

/// What `answer` did with a federation read's frames.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answered {
    /// Per client stream, in order of first use: SIGNAL_SENT frames and their count.
    pub answers: Vec<(u64, Vec<u8>, usize)>,
    /// Indices of the frames not taken, in order.
    pub rest: Vec<usize>,
}

/// FORWARDs of one read to one recipient, as `deliver` builds them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The recipient's peer ID.
    pub to: Vec<u8>,
    /// Its INCOMING frames (each length-prefixed), in order.
    pub incoming: Vec<u8>,
    /// The FORWARDED (DELIVERED) answers to those FORWARDs, in order.
    pub forwarded: Vec<u8>,
    /// Indices of those FORWARD frames in the read.
    pub taken: Vec<usize>,
}

#[derive(Debug)]
pub struct SignalRouter {
    max_payload: usize,
    timeout: f64,
    max_pending: usize,
    max_routes: usize,
    routes: HashMap<Vec<u8>, u64>,
    links: HashMap<u64, u64>,
    pending: BTreeMap<u64, Pending>,
    next_id: u64,
}

impl SignalRouter {
    /// `max_payload`: larger signals are left to the caller; `timeout`: seconds a FORWARD
    /// waits for its answer; `max_pending`: FORWARDs awaiting an answer at once;
    /// `max_routes`: peers with a route.
    pub fn new(
        max_payload: usize,
        timeout: f64,
        max_pending: usize,
        max_routes: usize,
    ) -> Result<Self, Error> {
        if max_payload > MAX_BLOB {
            return Err(Error::InvalidArgument("max_payload exceeds 65536".into()));
        }
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(Error::InvalidArgument("timeout must be positive".into()));
        }
        if max_pending == 0 || max_routes == 0 {
            return Err(Error::InvalidArgument(
                "max_pending and max_routes must be at least 1".into(),
            ));
        }
        Ok(SignalRouter {
            max_payload,
            timeout,
            max_pending,
            max_routes,
            routes: HashMap::new(),
            links: HashMap::new(),
            pending: BTreeMap::new(),
            next_id: FIRST_ID,
        })
    }

    /// Signals to `peer` go to the SSN `member` (any number the caller gives it).
    pub fn set_route(&mut self, peer: &[u8], member: u64) -> Result<(), Error> {
        if !ssn_wire::is_peer_id(peer) {
            return Err(Error::InvalidArgument("not a peer ID".into()));
        }
        if self.routes.len() >= self.max_routes && !self.routes.contains_key(peer) {
            return Err(Error::LimitExceeded(format!(
                "{} routes already held",
                self.max_routes
            )));
        }
        self.routes.insert(peer.to_vec(), member);
        Ok(())
    }

    pub fn drop_route(&mut self, peer: &[u8]) {
        self.routes.remove(peer);
    }

    /// The open federation stream to `member` is now `link` (a number never reused).
    pub fn open_link(&mut self, member: u64, link: u64) {
        self.links.insert(member, link);
    }

    /// `link` is closed: no more FORWARDs on it; its pending ones, oldest first.
    pub fn close_link(&mut self, link: u64) -> Vec<Failed> {
        self.links.retain(|_, open| *open != link);
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.link == link)
            .map(|(&id, _)| id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.pending.remove(&id))
            .map(|pending| pending.request)
            .collect()
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    fn new_id(&mut self) -> u64 {
        loop {
            let id = self.next_id;
            self.next_id = if id >= MAX_REQUEST_ID {
                FIRST_ID
            } else {
                id + 1
            };
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// The SIGNAL frames (bodies) of one read of client stream `stream`, whose peer is
    /// `sender`: at most `budget` are taken (the caller's free request slots and rate
    /// tokens), up to the first frame not taken (it and the rest go back in `rest`).
    /// `now` + the timeout is each FORWARD's deadline.
    pub fn route(
        &mut self,
        stream: u64,
        sender: &[u8],
        bodies: &[&[u8]],
        budget: usize,
        now: f64,
    ) -> Result<Routed, Error> {
        if sender.len() > MAX_BLOB {
            return Err(Error::InvalidArgument("byte string too long".into()));
        }
        let mut routed = Routed::default();
        for (index, body) in bodies.iter().enumerate() {
            let target = match ssn_wire::parse(body, false) {
                Some(Message::Signal { rid, to, payload })
                    if routed.taken < budget
                        && payload.len() <= self.max_payload
                        && self.pending.len() < self.max_pending =>
                {
                    self.routes
                        .get(to)
                        .and_then(|member| self.links.get(member))
                        .map(|&link| (link, rid, to, payload))
                }
                _ => None,
            };
            let Some((link, rid, to, payload)) = target else {
                // Only a prefix: the frames after this one keep their place behind it.
                routed.rest.extend(index..bodies.len());
                break;
            };
            let id = self.new_id();
            let frame = ssn_wire::encode_forward(id, sender, to, payload)?;
            match routed.forwards.iter_mut().find(|(at, _)| *at == link) {
                Some((_, blob)) => blob.extend_from_slice(&frame),
                None => routed.forwards.push((link, frame)),
            }
            self.pending.insert(
                id,
                Pending {
                    link,
                    deadline: now + self.timeout,
                    request: Failed {
                        stream,
                        rid,
                        to: to.to_vec(),
                        payload: payload.to_vec(),
                    },
                },
            );
            routed.taken += 1;
        }
        Ok(routed)
    }

    /// The frames (bodies) of one read of federation stream `link`: the FORWARDED answers
    /// to our FORWARDs on that link become SIGNAL_SENT frames for their clients.
    pub fn answer(&mut self, link: u64, bodies: &[&[u8]]) -> Answered {
        let mut answered = Answered::default();
        let mut streams: HashMap<u64, usize> = HashMap::new();
        for (index, body) in bodies.iter().enumerate() {
            let taken = match ssn_wire::parse(body, true) {
                Some(Message::Forwarded { rid, status })
                    if self.pending.get(&rid).is_some_and(|p| p.link == link) =>
                {
                    self.pending.remove(&rid).map(|pending| (pending, status))
                }
                _ => None,
            };
            let Some((pending, status)) = taken else {
                answered.rest.push(index);
                continue;
            };
            let request = pending.request;
            // (rid <= MAX_REQUEST_ID and status <= 1: parsed from a SIGNAL and a FORWARDED)
            let Ok(frame) = ssn_wire::encode_status(false, request.rid, status) else {
                answered.rest.push(index);
                continue;
            };
            // (a HashMap index, as in `deliver`: one read may answer thousands of streams)
            match streams.get(&request.stream) {
                Some(&at) => {
                    let (_, blob, count) = &mut answered.answers[at];
                    blob.extend_from_slice(&frame);
                    *count += 1;
                }
                None => {
                    streams.insert(request.stream, answered.answers.len());
                    answered.answers.push((request.stream, frame, 1));
                }
            }
        }
        answered
    }

    /// The receiving SSN's share: the FORWARD frames (bodies) of one read of a federation
    /// stream, grouped by recipient (in order of first appearance), each group with its
    /// INCOMING frames and the FORWARDED (DELIVERED) answers, for the caller to send if
    /// that recipient's stream takes them now; the indices of the frames from the first
    /// other one on (another message, a payload over the cap, a frame the parser does not
    /// accept): only a prefix is taken, as in `route`.
    pub fn deliver(&self, bodies: &[&[u8]]) -> (Vec<Delivery>, Vec<usize>) {
        let mut deliveries: Vec<Delivery> = Vec::new();
        let mut groups: HashMap<&[u8], usize> = HashMap::new();
        let mut rest = Vec::new();
        for (index, body) in bodies.iter().enumerate() {
            let Some(Message::Forward {
                rid,
                sender,
                to,
                payload,
            }) = ssn_wire::parse(body, true)
            else {
                rest.extend(index..bodies.len()); // (only a prefix, as in `route`)
                break;
            };
            if payload.len() > self.max_payload {
                rest.extend(index..bodies.len());
                break;
            }
            // (rid, sender and payload come from a parsed FORWARD: both encoders accept them)
            let (Ok(incoming), Ok(forwarded)) = (
                ssn_wire::encode_incoming(sender, payload),
                ssn_wire::encode_status(true, rid, 0),
            ) else {
                rest.extend(index..bodies.len());
                break;
            };
            let group = *groups.entry(to).or_insert_with(|| {
                deliveries.push(Delivery {
                    to: to.to_vec(),
                    ..Delivery::default()
                });
                deliveries.len() - 1
            });
            let delivery = &mut deliveries[group];
            delivery.incoming.extend_from_slice(&incoming);
            delivery.forwarded.extend_from_slice(&forwarded);
            delivery.taken.push(index);
        }
        (deliveries, rest)
    }

    /// The pending FORWARD `rid` on `link`, taken out (its answer came another way,
    /// e.g. a federation ERROR), or None.
    pub fn take(&mut self, link: u64, rid: u64) -> Option<Failed> {
        if self.pending.get(&rid).is_some_and(|p| p.link == link) {
            self.pending.remove(&rid).map(|pending| pending.request)
        } else {
            None
        }
    }

    /// The FORWARDs whose deadline is at or before `now`, oldest first, taken out.
    pub fn expire(&mut self, now: f64) -> Vec<Failed> {
        let mut failed = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            failed.push(entry.remove().request);
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(byte: u8) -> Vec<u8> {
        let mut raw = vec![0x00, 0x04];
        raw.extend_from_slice(&[byte; 4]);
        raw
    }

    fn body(frame: &[u8]) -> Vec<u8> {
        frame[1..].to_vec() // (the test frames are under 128 bytes: one-byte prefix)
    }

    fn signal(rid: u64, to: &[u8], payload: &[u8]) -> Vec<u8> {
        body(&ssn_wire::encode_signal(rid, to, payload).unwrap())
    }

    fn router() -> SignalRouter {
        let mut router = SignalRouter::new(100, 5.0, 3, 10).unwrap();
        router.set_route(&peer(1), 7).unwrap();
        router.set_route(&peer(2), 8).unwrap();
        router.open_link(7, 70);
        router.open_link(8, 80);
        router
    }

    #[test]
    fn signals_become_forwards_per_link_and_answers_per_stream() {
        let mut router = router();
        let sender = peer(9);
        let bodies = [
            signal(1, &peer(1), b"a"),
            signal(2, &peer(2), b"b"),
            signal(3, &peer(1), b"c"),
            vec![0x80],
            signal(4, &peer(1), b"d"), // after a frame not taken: handed back too
        ];
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let routed = router.route(5, &sender, &refs, 10, 1.0).unwrap();
        assert_eq!(routed.taken, 3);
        assert_eq!(routed.rest, vec![3, 4]);
        let mut to_70 = ssn_wire::encode_forward(FIRST_ID, &sender, &peer(1), b"a").unwrap();
        to_70.extend(ssn_wire::encode_forward(FIRST_ID + 2, &sender, &peer(1), b"c").unwrap());
        let to_80 = ssn_wire::encode_forward(FIRST_ID + 1, &sender, &peer(2), b"b").unwrap();
        assert_eq!(routed.forwards, vec![(70, to_70), (80, to_80)]);

        let answers = [
            body(&ssn_wire::encode_status(true, FIRST_ID + 2, 1).unwrap()),
            body(&ssn_wire::encode_status(true, FIRST_ID + 1, 0).unwrap()), // other link
            body(&ssn_wire::encode_status(true, FIRST_ID, 0).unwrap()),
        ];
        let refs: Vec<&[u8]> = answers.iter().map(Vec::as_slice).collect();
        let answered = router.answer(70, &refs);
        let mut sent = ssn_wire::encode_status(false, 3, 1).unwrap();
        sent.extend(ssn_wire::encode_status(false, 1, 0).unwrap());
        assert_eq!(answered.answers, vec![(5, sent, 2)]);
        assert_eq!(answered.rest, vec![1]);
        assert_eq!(router.pending_count(), 1);
    }

    #[test]
    fn leaves_what_it_cannot_take_to_the_caller() {
        let mut router = router();
        let bodies = [
            signal(1, &peer(3), b"x"),        // no route
            signal(2, &peer(1), &[0u8; 101]), // over the payload cap
            signal(3, &peer(1), b"ok"),       // taken
            signal(4, &peer(1), b"over budget"),
        ];
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        // Each call takes the prefix up to the first frame it cannot take.
        let routed = router.route(1, &peer(9), &refs, 1, 0.0).unwrap();
        assert_eq!((routed.taken, routed.rest), (0, vec![0, 1, 2, 3]));
        let routed = router.route(1, &peer(9), &refs[1..], 1, 0.0).unwrap();
        assert_eq!((routed.taken, routed.rest), (0, vec![0, 1, 2]));
        let routed = router.route(1, &peer(9), &refs[2..], 1, 0.0).unwrap();
        assert_eq!((routed.taken, routed.rest), (1, vec![1]));
        assert_eq!(router.pending_count(), 1);
        // A closed link routes nothing; its pending FORWARDs come back.
        let failed = router.close_link(70);
        assert_eq!(failed.len(), 1);
        assert_eq!(
            (failed[0].rid, failed[0].payload.as_slice()),
            (3, &b"ok"[..])
        );
        let routed = router.route(1, &peer(9), &refs[2..3], 5, 0.0).unwrap();
        assert_eq!((routed.taken, routed.rest), (0, vec![0]));
    }

    #[test]
    fn pending_is_bounded_expires_in_order_and_can_be_taken() {
        let mut router = router();
        let bodies: Vec<Vec<u8>> = (0..5).map(|rid| signal(rid, &peer(2), b"p")).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let routed = router.route(1, &peer(9), &refs[..2], 10, 1.0).unwrap();
        assert_eq!(routed.taken, 2);
        let routed = router.route(1, &peer(9), &refs[2..], 10, 2.0).unwrap();
        assert_eq!((routed.taken, routed.rest), (1, vec![1, 2])); // max_pending 3
        assert_eq!(router.take(70, FIRST_ID + 2), None); // wrong link
        assert_eq!(router.take(80, FIRST_ID + 2).map(|f| f.rid), Some(2));
        assert!(router.expire(5.999).is_empty());
        let expired: Vec<u64> = router.expire(6.0).iter().map(|f| f.rid).collect();
        assert_eq!(expired, vec![0, 1]);
        assert_eq!(router.pending_count(), 0);
    }

    #[test]
    fn refuses_bad_arguments_and_bounds_routes() {
        assert!(SignalRouter::new(MAX_BLOB + 1, 1.0, 1, 1).is_err());
        assert!(SignalRouter::new(10, 0.0, 1, 1).is_err());
        assert!(SignalRouter::new(10, f64::NAN, 1, 1).is_err());
        assert!(SignalRouter::new(10, 1.0, 0, 1).is_err());
        let mut router = SignalRouter::new(10, 1.0, 1, 1).unwrap();
        assert!(router.set_route(b"junk", 1).is_err());
        router.set_route(&peer(1), 1).unwrap();
        router.set_route(&peer(1), 2).unwrap();
        assert!(matches!(
            router.set_route(&peer(2), 1),
            Err(Error::LimitExceeded(_))
        ));
        router.drop_route(&peer(1));
        assert_eq!(router.route_count(), 0);
    }

    #[test]
    fn forwards_become_incoming_and_forwarded_per_recipient() {
        let router = router();
        let forward = |rid: u64, to: &[u8], payload: &[u8]| {
            body(&ssn_wire::encode_forward(rid, &peer(9), to, payload).unwrap())
        };
        let bodies = [
            forward(1, &peer(1), b"a"),
            forward(2, &peer(2), b"b"),
            forward(4, &peer(1), b"c"),
            body(&ssn_wire::encode_status(true, 3, 0).unwrap()), // not a FORWARD
            forward(5, &peer(1), b"d"),                          // after it: handed back too
        ];
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let (deliveries, rest) = router.deliver(&refs);
        assert_eq!(rest, vec![3, 4]);
        let incoming = |payload: &[u8]| ssn_wire::encode_incoming(&peer(9), payload).unwrap();
        let forwarded = |rid: u64| ssn_wire::encode_status(true, rid, 0).unwrap();
        assert_eq!(
            deliveries,
            vec![
                Delivery {
                    to: peer(1),
                    incoming: [incoming(b"a"), incoming(b"c")].concat(),
                    forwarded: [forwarded(1), forwarded(4)].concat(),
                    taken: vec![0, 2],
                },
                Delivery {
                    to: peer(2),
                    incoming: incoming(b"b"),
                    forwarded: forwarded(2),
                    taken: vec![1],
                },
            ]
        );
    }

    #[test]
    fn nothing_after_a_frame_not_taken_takes_effect() {
        let mut router = router();
        let forward = body(&ssn_wire::encode_forward(1, &peer(9), &peer(1), b"a").unwrap());
        let over_cap = body(&ssn_wire::encode_forward(2, &peer(9), &peer(1), &[0; 101]).unwrap());
        for first in [vec![0xff, 0xff], over_cap] {
            let bodies = [first, forward.clone()];
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            let (deliveries, rest) = router.deliver(&refs);
            assert_eq!((deliveries, rest), (Vec::new(), vec![0, 1]));
        }
        for first in [vec![0xff, 0xff], signal(1, &peer(3), b"no route")] {
            let bodies = [first, signal(2, &peer(1), b"routed")];
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            let routed = router.route(1, &peer(9), &refs, 10, 0.0).unwrap();
            assert_eq!(
                routed,
                Routed {
                    rest: vec![0, 1],
                    ..Routed::default()
                }
            );
        }
        assert_eq!(router.pending_count(), 0);
    }

    #[test]
    fn answers_are_grouped_per_stream_in_order_of_first_use() {
        let mut router = router();
        for stream in [4, 3, 4] {
            let bodies = [signal(stream, &peer(1), b"s")];
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            assert_eq!(
                router.route(stream, &peer(9), &refs, 1, 0.0).unwrap().taken,
                1
            );
        }
        let answers: Vec<Vec<u8>> = [2, 0, 1]
            .iter()
            .map(|&n| body(&ssn_wire::encode_status(true, FIRST_ID + n, 0).unwrap()))
            .collect();
        let refs: Vec<&[u8]> = answers.iter().map(Vec::as_slice).collect();
        let answered = router.answer(70, &refs);
        let sent = |rid: u64| ssn_wire::encode_status(false, rid, 0).unwrap();
        assert_eq!(
            answered.answers,
            vec![(4, [sent(4), sent(4)].concat(), 2), (3, sent(3), 1)]
        );
        assert!(answered.rest.is_empty());
    }

    #[test]
    fn request_ids_wrap_within_their_range() {
        let mut router = router();
        router.next_id = MAX_REQUEST_ID;
        assert_eq!(router.new_id(), MAX_REQUEST_ID);
        assert_eq!(router.new_id(), FIRST_ID);
    }
}
