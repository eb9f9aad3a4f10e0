//! The heartbeat (mesh and fan-out maintenance, gossip targets) and the choice of
//! publish targets: a second `impl MeshState` block.

use std::cmp::Ordering;

use super::{
    insert_sorted, remove_sorted, sort_by_id, Heartbeat, MeshState, PeerHandle, TopicHandle,
};
use crate::gossip::{check_time, SplitMix64};
use crate::Error;

impl MeshState {
    // -- heartbeat ----------------------------------------------------------------------

    /// One heartbeat: mesh and fan-out maintenance, gossip targets.
    pub fn heartbeat(&mut self, now: f64, seed: u64) -> Result<Heartbeat, Error> {
        check_time(now)?;
        let mut rng = SplitMix64::new(seed);
        self.ticks += 1;
        self.backoffs.expire(now);
        let mut decision = Heartbeat::default();
        for topic in self.sorted_topics(|topic| topic.mesh.is_some()) {
            self.maintain_mesh(topic, now, &mut rng, &mut decision);
        }
        for topic in self.sorted_topics(|topic| topic.fanout.is_some()) {
            self.maintain_fanout(topic, now, &mut rng, &mut decision);
        }
        for topic in self.sorted_topics(|topic| topic.mesh.is_some() || topic.fanout.is_some()) {
            let state = self.topic(topic);
            let excluded = state
                .mesh
                .as_deref()
                .or(state.fanout.as_deref())
                .unwrap_or(&[]);
            let threshold = self.params.gossip_threshold;
            let mut candidates: Vec<PeerHandle> = state
                .subscribers
                .iter()
                .copied()
                .filter(|&handle| {
                    let peer = self.peer(handle);
                    peer.meshable() && !excluded.contains(&handle) && peer.score >= threshold
                })
                .collect();
            let by_factor = (self.params.gossip_factor * candidates.len() as f64) as usize;
            rng.sample(&mut candidates, self.params.d_lazy.max(by_factor));
            if !candidates.is_empty() {
                decision.gossip.push((state.name.to_string(), candidates));
            }
        }
        Ok(decision)
    }

    fn prune_from(
        &mut self,
        mesh: &mut Vec<PeerHandle>,
        handle: PeerHandle,
        name: &str,
        now: f64,
        decision: &mut Heartbeat,
    ) {
        remove_sorted(&self.peers, mesh, handle);
        let backoff = self.params.prune_backoff;
        decision.prunes.push((handle, name.to_owned(), backoff));
        self.add_backoff(handle, name, now + backoff, now);
    }

    fn graft_into(
        &self,
        mesh: &mut Vec<PeerHandle>,
        chosen: Vec<PeerHandle>,
        name: &str,
        decision: &mut Heartbeat,
    ) {
        for handle in chosen {
            insert_sorted(&self.peers, mesh, handle);
            decision.grafts.push((handle, name.to_owned()));
        }
    }

    fn maintain_mesh(
        &mut self,
        topic: TopicHandle,
        now: f64,
        rng: &mut SplitMix64,
        decision: &mut Heartbeat,
    ) {
        let params = self.params.clone();
        let name = self.topic(topic).name.to_string();
        let mut mesh = self.topic_mut(topic).mesh.take().expect("joined topic");

        let negative: Vec<PeerHandle> = mesh
            .iter()
            .copied()
            .filter(|&handle| self.score(handle) < 0.0)
            .collect();
        for handle in negative {
            self.prune_from(&mut mesh, handle, &name, now, decision);
        }

        if mesh.len() < params.d_lo {
            let mut candidates = self.graft_candidates(topic, now, &mesh);
            rng.sample(&mut candidates, params.d - mesh.len());
            self.graft_into(&mut mesh, candidates, &name, decision);
        } else if mesh.len() > params.d_hi {
            let mut ordered = mesh.clone();
            rng.shuffle(&mut ordered);
            ordered.sort_by(|&a, &b| {
                self.score(b)
                    .partial_cmp(&self.score(a))
                    .unwrap_or(Ordering::Equal)
            });
            let scored = params.d_score.min(ordered.len());
            rng.shuffle(&mut ordered[scored..]);
            let (keep, beyond) = ordered.split_at_mut(params.d);
            let mut outbound = keep
                .iter()
                .filter(|&&handle| self.peer(handle).outbound)
                .count();
            if outbound < params.d_out {
                let mut slot = keep.len() - 1;
                for candidate in beyond.iter_mut() {
                    if outbound >= params.d_out {
                        break;
                    }
                    if !self.peer(*candidate).outbound {
                        continue;
                    }
                    while self.peer(keep[slot]).outbound {
                        slot -= 1;
                    }
                    std::mem::swap(&mut keep[slot], candidate);
                    slot = slot.saturating_sub(1);
                    outbound += 1;
                }
            }
            for &handle in beyond.iter() {
                self.prune_from(&mut mesh, handle, &name, now, decision);
            }
        }

        if mesh.len() >= params.d_lo {
            let outbound = mesh
                .iter()
                .filter(|&&handle| self.peer(handle).outbound)
                .count();
            if outbound < params.d_out {
                let mut candidates: Vec<PeerHandle> = self
                    .graft_candidates(topic, now, &mesh)
                    .into_iter()
                    .filter(|&handle| self.peer(handle).outbound)
                    .collect();
                rng.sample(&mut candidates, params.d_out - outbound);
                self.graft_into(&mut mesh, candidates, &name, decision);
            }
        }

        if self.ticks % params.opportunistic_graft_ticks as u64 == 0 && mesh.len() > 1 {
            let mut scores: Vec<f64> = mesh.iter().map(|&handle| self.score(handle)).collect();
            scores.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
            let median = scores[scores.len() / 2];
            if median < params.opportunistic_graft_threshold {
                let mut candidates: Vec<PeerHandle> = self
                    .graft_candidates(topic, now, &mesh)
                    .into_iter()
                    .filter(|&handle| self.score(handle) > median)
                    .collect();
                rng.sample(&mut candidates, params.opportunistic_graft_peers);
                self.graft_into(&mut mesh, candidates, &name, decision);
            }
        }
        self.topic_mut(topic).mesh = Some(mesh);
    }

    fn maintain_fanout(
        &mut self,
        topic: TopicHandle,
        now: f64,
        rng: &mut SplitMix64,
        decision: &mut Heartbeat,
    ) {
        let state = self.topic(topic);
        if state.last_published + self.params.fanout_ttl < now {
            decision.fanout_expired.push(state.name.to_string());
            self.topic_mut(topic).fanout = None;
            self.release_topic_if_unused(topic);
            return;
        }
        let threshold = self.params.publish_threshold;
        let mut fanout = self.topic_mut(topic).fanout.take().expect("fan-out topic");
        fanout.retain(|&handle| self.score(handle) >= threshold);
        if fanout.len() < self.params.d {
            let mut candidates = self.fanout_candidates(topic, &fanout);
            rng.sample(&mut candidates, self.params.d - fanout.len());
            for handle in candidates {
                insert_sorted(&self.peers, &mut fanout, handle);
            }
        }
        self.topic_mut(topic).fanout = Some(fanout);
    }

    // -- publishing ---------------------------------------------------------------------

    /// Peers to send a message of `name` to, ascending by ID, never `source` (see
    /// `neonet.core.gossip.MeshState.publish_targets`); appended to `out`.
    pub fn publish_targets(
        &mut self,
        name: &str,
        source: Option<&[u8]>,
        flood_publish: bool,
        now: f64,
        rng: &mut SplitMix64,
        out: &mut Vec<PeerHandle>,
    ) -> Result<(), Error> {
        check_time(now)?;
        let source = source.and_then(|id| self.peer_handle(id));
        let threshold = self.params.publish_threshold;
        let existing = self.topic_index.get(name).copied();
        if flood_publish {
            if let Some(topic) = existing {
                out.extend(
                    self.topic(topic)
                        .subscribers
                        .iter()
                        .copied()
                        .filter(|&handle| {
                            let peer = self.peer(handle);
                            Some(handle) != source && (peer.score >= threshold || peer.explicit)
                        }),
                );
            }
            return Ok(());
        }
        let topic = match existing {
            Some(topic) => topic,
            None => self.topic_for_local_use(name)?,
        };
        if self.topic(topic).mesh.is_none() {
            if self.topic(topic).fanout.as_ref().is_none_or(Vec::is_empty) {
                let mut chosen = self.fanout_candidates(topic, &[]);
                rng.sample(&mut chosen, self.params.d);
                sort_by_id(&self.peers, &mut chosen);
                self.topic_mut(topic).fanout = Some(chosen);
            }
            self.topic_mut(topic).last_published = now;
        }
        let state = self.topic(topic);
        let base = state
            .mesh
            .as_deref()
            .or(state.fanout.as_deref())
            .unwrap_or(&[]);
        let keep = |handle: &PeerHandle| Some(*handle) != source;
        if state.extras.is_empty() {
            out.extend(base.iter().filter(|handle| keep(handle)));
            return Ok(());
        }
        let extras = state.extras.iter().copied().filter(|&handle| {
            let peer = self.peer(handle);
            peer.explicit || peer.score >= threshold
        });
        // Merge two ID-ordered lists (disjoint: extras are never in mesh or fan-out).
        let mut base = base.iter().copied().peekable();
        let mut extras = extras.peekable();
        loop {
            let next = match (base.peek(), extras.peek()) {
                (Some(&a), Some(&b)) => {
                    if self.peer(a).id <= self.peer(b).id {
                        base.next()
                    } else {
                        extras.next()
                    }
                }
                (Some(_), None) => base.next(),
                (None, Some(_)) => extras.next(),
                (None, None) => break,
            };
            if let Some(handle) = next.filter(keep) {
                out.push(handle);
            }
        }
        Ok(())
    }
}
