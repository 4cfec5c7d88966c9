//! [`StepGate`]: engines that share the inference thread pool take turns, one forward step at a time.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A first-come, first-served turn for forward steps, shared by every engine on the same cores.
///
/// Each step takes a ticket and runs when its number comes up, so steps never overlap (each already
/// uses every inference thread) and two busy engines alternate step for step. An idle engine takes no
/// tickets and costs nothing.
#[derive(Debug, Clone, Default)]
pub struct StepGate(Arc<Turns>);

#[derive(Debug, Default)]
struct Turns {
    /// `(next ticket to hand out, ticket now running)`.
    tickets: Mutex<(u64, u64)>,
    changed: Condvar,
}

impl Turns {
    fn lock(&self) -> MutexGuard<'_, (u64, u64)> {
        self.tickets.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Passes the turn to the next ticket when the step ends, even by unwinding.
struct Turn<'a>(&'a Turns);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.lock().1 += 1;
        self.0.changed.notify_all();
    }
}

impl StepGate {
    /// Runs `step` once every step that asked before it has run.
    pub fn run<T>(&self, step: impl FnOnce() -> T) -> T {
        let turns = &*self.0;
        let mut tickets = turns.lock();
        let mine = tickets.0;
        tickets.0 += 1;
        while tickets.1 != mine {
            tickets = turns.changed.wait(tickets).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        drop(tickets);
        let _turn = Turn(turns);
        step()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn steps_never_overlap_and_all_run() {
        let gate = StepGate::default();
        let inside = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (gate, inside, done) = (gate.clone(), inside.clone(), done.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        gate.run(|| {
                            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two steps at once");
                            std::hint::spin_loop();
                            inside.fetch_sub(1, Ordering::SeqCst);
                        });
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 800);
    }

    #[test]
    fn a_panicking_step_passes_the_turn_on() {
        let gate = StepGate::default();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gate.run(|| panic!("step failed"))));
        assert!(caught.is_err());
        assert_eq!(gate.run(|| 7), 7, "the next step still gets its turn");
    }

    #[test]
    fn waiting_steps_run_in_arrival_order() {
        let gate = StepGate::default();
        let tickets_taken = |gate: &StepGate| gate.0.lock().0;
        let order = Arc::new(Mutex::new(Vec::new()));
        let (hold, release) = std::sync::mpsc::channel::<()>();
        let holder = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.run(|| release.recv().unwrap()))
        };
        let mut waiters = Vec::new();
        for i in 0..3u64 {
            while tickets_taken(&gate) < i + 1 {
                std::thread::yield_now();
            }
            let (gate, order) = (gate.clone(), order.clone());
            waiters.push(std::thread::spawn(move || gate.run(|| order.lock().unwrap().push(i))));
        }
        while tickets_taken(&gate) < 4 {
            std::thread::yield_now();
        }
        hold.send(()).unwrap();
        holder.join().unwrap();
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    }
}
