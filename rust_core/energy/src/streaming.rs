//! Window integration over a uniform trace that arrives in chunks (a live meter, or a file too
//! large to load). Memory is bounded by the windows plus one chunk: only two samples of context
//! are kept between chunks (the linear model needs each sample's neighbours).
//!
//! The result equals `integrate_uniform` on the concatenated trace up to floating-point
//! summation order.

use crate::clock::ClockMap;
use crate::error::{check_finite, check_sample_rate, EnergyError};
use crate::integrate::{check_window_args, finish, integrate_span, Accum, Reading, WindowStats};
use crate::model::SignalModel;
use crate::sample::Sample;

/// One window in sample coordinates with its running sums.
#[derive(Debug, Clone)]
struct Slot {
    ua: f64,
    ub: f64,
    acc: Accum,
}

/// Streaming counterpart of `integrate_uniform`.
#[derive(Debug, Clone)]
pub struct StreamingIntegrator {
    fs: f64,
    reading: Reading,
    slots: Vec<Slot>,
    /// Window indices sorted by start.
    order: Vec<usize>,
    /// Next entry of `order` not yet activated.
    next: usize,
    /// Windows that started before `done` and end after it.
    active: Vec<usize>,
    /// Samples received so far.
    seen: u64,
    /// Sample intervals `[0, done)` are fully integrated into every window.
    done: u64,
    /// The last (up to) two samples received, oldest first.
    context: Vec<f64>,
    /// Reused buffer: context followed by the current chunk.
    buffer: Vec<f64>,
    finished: bool,
}

impl StreamingIntegrator {
    /// Windows `[starts[k], ends[k]]` on the agent clock; the trace starts at `t0` (meter clock).
    /// Samples at or above `saturation_w` are excluded and flag `SATURATED`.
    pub fn new(
        fs: f64,
        t0: f64,
        starts: &[f64],
        ends: &[f64],
        clock: ClockMap,
        model: SignalModel,
        saturation_w: Option<f64>,
    ) -> Result<Self, EnergyError> {
        check_sample_rate(fs)?;
        check_finite("t0", t0)?;
        let reading = check_window_args(clock, starts, ends, model, saturation_w)?;
        let u = |agent_t: f64| (clock.to_meter(agent_t) - t0) * fs;
        let slots: Vec<Slot> = starts
            .iter()
            .zip(ends)
            .map(|(&s, &e)| Slot {
                ua: u(s),
                ub: u(e),
                acc: Accum::default(),
            })
            .collect();
        let mut order: Vec<usize> = (0..slots.len()).collect();
        order.sort_by(|&i, &j| slots[i].ua.total_cmp(&slots[j].ua));
        Ok(StreamingIntegrator {
            fs,
            reading,
            slots,
            order,
            next: 0,
            active: Vec::new(),
            seen: 0,
            done: 0,
            context: Vec::with_capacity(2),
            buffer: Vec::new(),
            finished: false,
        })
    }

    /// Samples received so far.
    pub fn samples_seen(&self) -> u64 {
        self.seen
    }

    /// Adds the next chunk of samples.
    pub fn feed<T: Sample>(&mut self, chunk: &[T]) -> Result<(), EnergyError> {
        if self.finished {
            return Err(EnergyError::NoData(
                "StreamingIntegrator: feed() called after finish()".to_string(),
            ));
        }
        if chunk.is_empty() {
            return Ok(());
        }
        // buffer[0] is global sample `base`.
        let base = self.seen - self.context.len() as u64;
        self.buffer.clear();
        self.buffer.extend_from_slice(&self.context);
        self.buffer.extend(chunk.iter().map(|v| v.to_f64()));
        self.seen += chunk.len() as u64;
        // Every sample but the newest now has both neighbours (or is the trace's first).
        self.advance(base, self.seen - 1);
        let keep = self.buffer.len().min(2);
        self.context.clear();
        self.context
            .extend_from_slice(&self.buffer[self.buffer.len() - keep..]);
        Ok(())
    }

    /// Integrates the buffered samples' intervals up to global sample boundary `upto`.
    fn advance(&mut self, base: u64, upto: u64) {
        if upto <= self.done {
            return;
        }
        let (lo, hi) = (self.done as f64, upto as f64);
        while self.next < self.order.len() && self.slots[self.order[self.next]].ua < hi {
            self.active.push(self.order[self.next]);
            self.next += 1;
        }
        let offset = base as f64;
        let (buffer, reading) = (&self.buffer, self.reading);
        for &w in &self.active {
            let slot = &mut self.slots[w];
            let a = slot.ua.max(lo);
            let b = slot.ub.min(hi);
            if a < b {
                integrate_span(
                    buffer.as_slice(),
                    a - offset,
                    b - offset,
                    reading,
                    &mut slot.acc,
                );
            }
        }
        let slots = &self.slots;
        self.active.retain(|&w| slots[w].ub > hi);
        self.done = upto;
    }

    /// Integrates the last sample and returns the stats of every window, in input order.
    pub fn finish(&mut self) -> Result<Vec<WindowStats>, EnergyError> {
        if self.finished {
            return Err(EnergyError::NoData(
                "StreamingIntegrator: finish() called twice".to_string(),
            ));
        }
        self.finished = true;
        if self.seen > 0 {
            let base = self.seen - self.context.len() as u64;
            self.buffer.clear();
            self.buffer.extend_from_slice(&self.context);
            self.advance(base, self.seen);
        }
        let n = self.seen as f64;
        Ok(self
            .slots
            .iter()
            .map(|s| finish(s.acc, s.ub - s.ua, s.ua < 0.0 || s.ub > n, self.fs))
            .collect())
    }
}
