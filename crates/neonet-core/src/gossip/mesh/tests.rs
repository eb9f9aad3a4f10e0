//! Unit tests of `MeshState` and `GossipParams`.

use super::*;

const MESHSUB: &str = "/meshsub/1.1.0";
const TOPIC: &str = "blocks";

fn peer(number: u8) -> Vec<u8> {
    let mut id = b"\x00\x24\x08\x01\x12\x20".to_vec();
    id.extend([number; 32]);
    id
}

fn ids(state: &MeshState, handles: &[PeerHandle]) -> Vec<Vec<u8>> {
    handles
        .iter()
        .map(|&handle| state.peer_id(handle).to_vec())
        .collect()
}

fn state_with(count: u8, outbound: &[u8]) -> MeshState {
    let mut state = MeshState::new(GossipParams::default()).unwrap();
    for number in 0..count {
        state
            .add_peer(&peer(number), outbound.contains(&number), MESHSUB, false)
            .unwrap();
        assert!(state.peer_subscribed(&peer(number), TOPIC).unwrap());
    }
    state
}

#[test]
fn params_are_validated() {
    assert!(GossipParams::default().validate().is_ok());
    let bad = [
        GossipParams {
            d_lo: 7,
            ..GossipParams::default()
        },
        GossipParams {
            d_out: 3,
            d: 5,
            ..GossipParams::default()
        },
        GossipParams {
            gossip_factor: 1.5,
            ..GossipParams::default()
        },
        GossipParams {
            fanout_ttl: f64::NAN,
            ..GossipParams::default()
        },
        GossipParams {
            gossip_threshold: 1.0,
            ..GossipParams::default()
        },
        GossipParams {
            max_peers: 0,
            ..GossipParams::default()
        },
    ];
    for params in bad {
        assert!(MeshState::new(params).is_err());
    }
}

#[test]
fn peers_and_bounds() {
    let params = GossipParams {
        max_peers: 2,
        max_topics: 1,
        ..GossipParams::default()
    };
    let mut state = MeshState::new(params).unwrap();
    state.add_peer(b"a", false, MESHSUB, false).unwrap();
    assert!(state.add_peer(b"a", false, MESHSUB, false).is_err());
    assert!(state.add_peer(b"b", false, "/meshsub/0.1", false).is_err());
    assert!(state.add_peer(b"", false, MESHSUB, false).is_err());
    state
        .add_peer(b"b", false, "/floodsub/1.0.0", false)
        .unwrap();
    assert!(state.add_peer(b"c", false, MESHSUB, false).is_err());
    assert!(state.peer_subscribed(b"a", "one").unwrap());
    assert!(!state.peer_subscribed(b"a", "two").unwrap());
    assert!(state.join("two", 0.0, 1).is_err());
    assert!(state.peer_subscribed(b"zz", "one").is_err());
    state.remove_peer(b"a").unwrap();
    assert_eq!(state.topic_count(), 0);
    assert_eq!(state.peer_count(), 1);
}

#[test]
fn join_takes_d_subscribers_and_leave_prunes_them() {
    let mut state = state_with(20, &[]);
    let chosen = state.join(TOPIC, 0.0, 7).unwrap();
    assert_eq!(chosen.len(), 6);
    let mut sorted = ids(&state, &chosen);
    sorted.sort();
    assert_eq!(ids(&state, &state.mesh_peers(TOPIC)), sorted);
    let prunes = state.leave(TOPIC, 5.0).unwrap();
    assert_eq!(prunes.len(), 6);
    assert!(prunes
        .iter()
        .all(|(_, topic, backoff)| topic == TOPIC && *backoff == 10.0));
    let first = state.peer_id(prunes[0].0).to_vec();
    assert_eq!(state.backoff_until(&first, TOPIC), Some(15.0));
    assert!(state.joined_topics().is_empty());
}

#[test]
fn graft_rules() {
    let mut state = state_with(13, &[]);
    assert_eq!(
        state.handle_graft(&peer(0), TOPIC, 0.0).unwrap(),
        GraftVerdict::Ignored
    );
    state.join(TOPIC, 0.0, 1).unwrap();
    let members = ids(&state, &state.mesh_peers(TOPIC));
    let outsiders: Vec<Vec<u8>> = (0..13)
        .map(peer)
        .filter(|id| !members.contains(id))
        .collect();
    state.set_score(&outsiders[0], -1.0).unwrap();
    assert_eq!(
        state.handle_graft(&outsiders[0], TOPIC, 1.0).unwrap(),
        GraftVerdict::RefusedScore
    );
    assert_eq!(
        state.handle_graft(&outsiders[0], TOPIC, 2.0).unwrap(),
        GraftVerdict::RefusedBackoff
    );
    assert_eq!(state.backoff_until(&outsiders[0], TOPIC), Some(62.0));
    for other in &outsiders[1..] {
        assert_eq!(
            state.handle_graft(other, TOPIC, 3.0).unwrap(),
            GraftVerdict::Accepted
        );
    }
    state.add_peer(b"inbound", false, MESHSUB, false).unwrap();
    state.add_peer(b"outbound", true, MESHSUB, false).unwrap();
    state.add_peer(b"explicit", false, MESHSUB, true).unwrap();
    assert_eq!(
        state.handle_graft(b"inbound", TOPIC, 4.0).unwrap(),
        GraftVerdict::RefusedFull
    );
    assert_eq!(
        state.handle_graft(b"outbound", TOPIC, 4.0).unwrap(),
        GraftVerdict::Accepted
    );
    assert_eq!(
        state.handle_graft(b"explicit", TOPIC, 4.0).unwrap(),
        GraftVerdict::RefusedExplicit
    );
    assert_eq!(state.mesh_peers(TOPIC).len(), 13);
    assert!(state
        .handle_prune(b"outbound", TOPIC, Some(5.0), 4.0)
        .unwrap());
    assert_eq!(state.backoff_until(b"outbound", TOPIC), Some(9.0));
    assert!(state
        .handle_prune(b"outbound", TOPIC, Some(-1.0), 4.0)
        .is_err());
}

#[test]
fn oversubscription_keeps_best_scores_and_outbound_quota() {
    for seed in 0..20 {
        let mut state = MeshState::new(GossipParams::default()).unwrap();
        state.join(TOPIC, 0.0, seed).unwrap();
        for number in 0..14u8 {
            state
                .add_peer(&peer(number), number >= 12, MESHSUB, false)
                .unwrap();
            state
                .set_score(&peer(number), if number < 4 { 10.0 } else { 1.0 })
                .unwrap();
            assert_eq!(
                state.handle_graft(&peer(number), TOPIC, 0.0).unwrap(),
                GraftVerdict::Accepted
            );
        }
        let decision = state.heartbeat(1.0, seed).unwrap();
        let expected: Vec<Vec<u8>> = [0, 1, 2, 3, 12, 13].into_iter().map(peer).collect();
        assert_eq!(ids(&state, &state.mesh_peers(TOPIC)), expected);
        assert_eq!(decision.prunes.len(), 8);
        assert!(decision.grafts.is_empty());
    }
}

#[test]
fn heartbeat_tops_up_and_prunes_negative_peers() {
    let mut state = state_with(3, &[]);
    state.join(TOPIC, 0.0, 1).unwrap();
    for number in 3..15 {
        state
            .add_peer(&peer(number), false, MESHSUB, false)
            .unwrap();
        state.peer_subscribed(&peer(number), TOPIC).unwrap();
    }
    let decision = state.heartbeat(1.0, 2).unwrap();
    assert_eq!(decision.grafts.len(), 3);
    assert_eq!(state.mesh_peers(TOPIC).len(), 6);
    let victim = state.peer_id(state.mesh_peers(TOPIC)[0]).to_vec();
    state.set_score(&victim, -3.0).unwrap();
    let decision = state.heartbeat(2.0, 3).unwrap();
    assert_eq!(
        ids(
            &state,
            &decision.prunes.iter().map(|p| p.0).collect::<Vec<_>>()
        ),
        vec![victim.clone()]
    );
    assert!(!ids(&state, &state.mesh_peers(TOPIC)).contains(&victim));
}

#[test]
fn fanout_publish_top_up_and_expiry() {
    let mut state = state_with(2, &[]);
    let mut rng = SplitMix64::new(1);
    let mut out = Vec::new();
    state
        .publish_targets(TOPIC, None, false, 0.0, &mut rng, &mut out)
        .unwrap();
    assert_eq!(ids(&state, &out), vec![peer(0), peer(1)]);
    for number in 2..10 {
        state
            .add_peer(&peer(number), false, MESHSUB, false)
            .unwrap();
        state.peer_subscribed(&peer(number), TOPIC).unwrap();
    }
    state.heartbeat(1.0, 1).unwrap();
    assert_eq!(state.fanout_peers(TOPIC).len(), 6);
    assert!(state.heartbeat(60.0, 1).unwrap().fanout_expired.is_empty());
    assert_eq!(
        state.heartbeat(60.5, 1).unwrap().fanout_expired,
        vec![TOPIC.to_string()]
    );
    assert!(state.fanout_peers(TOPIC).is_empty());
}

#[test]
fn publish_merges_extras_and_skips_the_source() {
    let mut state = state_with(8, &[]);
    state
        .add_peer(b"\x00", false, "/floodsub/1.0.0", false)
        .unwrap();
    state.add_peer(b"\xff", false, MESHSUB, true).unwrap();
    state.peer_subscribed(b"\x00", TOPIC).unwrap();
    state.peer_subscribed(b"\xff", TOPIC).unwrap();
    state.join(TOPIC, 0.0, 3).unwrap();
    let mesh = ids(&state, &state.mesh_peers(TOPIC));
    let mut rng = SplitMix64::new(1);
    let mut out = Vec::new();
    state
        .publish_targets(TOPIC, Some(&mesh[0]), false, 1.0, &mut rng, &mut out)
        .unwrap();
    let mut expected = vec![b"\x00".to_vec()];
    expected.extend(mesh[1..].iter().cloned());
    expected.push(b"\xff".to_vec());
    assert_eq!(ids(&state, &out), expected);
    out.clear();
    state
        .publish_targets(TOPIC, None, true, 1.0, &mut rng, &mut out)
        .unwrap();
    assert_eq!(out.len(), 10);
}

#[test]
fn backoffs_are_bounded_and_evict_the_first_ending() {
    let params = GossipParams {
        max_backoffs: 2,
        ..GossipParams::default()
    };
    let mut state = MeshState::new(params).unwrap();
    for number in 0..4 {
        state
            .add_peer(&peer(number), false, MESHSUB, false)
            .unwrap();
        state.peer_subscribed(&peer(number), TOPIC).unwrap();
    }
    state.join(TOPIC, 0.0, 1).unwrap();
    state
        .handle_prune(&peer(0), TOPIC, Some(30.0), 0.0)
        .unwrap();
    state
        .handle_prune(&peer(1), TOPIC, Some(10.0), 0.0)
        .unwrap();
    state
        .handle_prune(&peer(2), TOPIC, Some(20.0), 0.0)
        .unwrap();
    assert_eq!(state.backoff_until(&peer(1), TOPIC), None);
    assert_eq!(state.backoff_until(&peer(2), TOPIC), Some(20.0));
    state
        .handle_prune(&peer(3), TOPIC, Some(5.0), 25.0)
        .unwrap();
    assert_eq!(state.backoff_until(&peer(2), TOPIC), None);
    assert_eq!(state.backoff_until(&peer(0), TOPIC), Some(30.0));
    assert_eq!(state.backoff_until(&peer(3), TOPIC), Some(30.0));
}

#[test]
fn same_seed_same_decisions() {
    let run = |seed: u64| {
        let mut state = state_with(40, &[0, 5, 10, 15, 20]);
        let joined = state.join(TOPIC, 0.0, seed).unwrap();
        let mut log = vec![ids(&state, &joined)];
        for tick in 1..6u8 {
            for number in (tick..40).step_by(7) {
                state
                    .handle_graft(&peer(number), TOPIC, f64::from(tick))
                    .unwrap();
            }
            let decision = state
                .heartbeat(f64::from(tick), seed + u64::from(tick))
                .unwrap();
            log.push(ids(
                &state,
                &decision.grafts.iter().map(|g| g.0).collect::<Vec<_>>(),
            ));
            log.push(ids(
                &state,
                &decision.prunes.iter().map(|p| p.0).collect::<Vec<_>>(),
            ));
        }
        log
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}
