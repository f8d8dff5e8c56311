//! The conformance suite: the contracts of every primitive as plain async
//! functions taking a store, run unchanged against every backend. One
//! section per primitive: [`counter`], [`queue`], [`lease`] (leased tickets
//! and their holders), [`document`], [`tally`] and [`claim`]; and [`change`],
//! the waiting for a change that every waiter is built on.
//!
//! A store's test file gets the whole suite with one line:
//!
//! ```ignore
//! mod conformance;
//!
//! async fn store() -> (Arc<dyn Store>, Guard) { /* a fresh, empty store */ }
//!
//! conformance_suite!(store());
//! ```
//!
//! The argument is an async expression that yields `(Arc<dyn Store>,
//! guard)`: a fresh, empty store and whatever must live as long as it (a
//! temporary directory, a server); it is evaluated once per test, and may
//! `return` from the test to skip it (as the DynamoDB tests do without a
//! server). Each check becomes one test named after it, so a failure names
//! the contract it broke.
//!
//! [`conformance_suite!`] lists the checks of every section; a check or a
//! section is added there, and every store runs it.
//!
//! Each check would fail on the bug it is named after.

#![allow(dead_code)] // each test binary uses the suite through the macros

pub mod change;
pub mod claim;
pub mod counter;
pub mod document;
pub mod lease;
pub mod queue;
pub mod tally;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use monotone::{ErrorKind, Store, Tags, WaitOptions};

/// Every check of every section, each a `#[tokio::test]` on a fresh store
/// from `$make` (see the module docs), on the runtime the section's checks
/// need. A new check or section is listed here.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_checks!($make, counter, (flavor = "multi_thread", worker_threads = 8);
            counter_starts_at_zero,
            counter_next_adds_one,
            counters_are_independent,
            counter_remove,
            counter_on_queue_is_wrong_type,
            concurrent_next_hands_out_each_value_once,
        );
        $crate::conformance_checks!($make, queue, (flavor = "multi_thread", worker_threads = 8);
            queue_on_counter_is_wrong_type,
            absent_queue_reads_and_leaves,
            join_assigns_counters_positions_and_tokens,
            join_is_idempotent,
            leave_shifts_positions_and_keeps_counters,
            ticket_reads_without_writing,
            every_write_adds_one_to_the_token,
            queue_remove,
            invalid_input_is_refused_and_changes_nothing,
            ids_at_the_limits_round_trip,
            tags_round_trip,
            concurrent_joins_get_distinct_counters_tokens_and_positions,
            concurrent_joins_and_leaves_lose_no_write,
        );
        $crate::conformance_checks!($make, lease, (flavor = "multi_thread", worker_threads = 4);
            leased_and_permanent_tickets_show_their_lease,
            renewal_adds_one_and_leaves_the_token_alone,
            renewal_of_a_ticket_not_held_is_lease_lost,
            a_renewal_that_reads_sees_the_queue_as_it_left_it,
            a_holder_removes_a_ticket_left_unrenewed_for_a_full_lease,
            a_holder_keeps_its_ticket_while_observers_watch,
            an_unrenewed_ticket_is_removed_only_after_a_full_observed_lease,
            a_removal_loses_to_a_renewal_that_came_first,
            permanent_tickets_never_expire,
            the_holder_learns_of_loss_before_anyone_removes_it,
            a_dead_holders_ticket_is_taken_over_with_a_larger_token,
            waiters_become_head_in_ticket_order,
            a_semaphore_of_two_admits_two_at_a_time,
            leases_on_a_counter_id_are_wrong_type,
            a_holders_join_sent_again_is_harmless_and_others_are_refused,
            two_holders_of_one_process_id_never_hold_at_once,
            a_lost_holder_leaves_the_next_holders_ticket_alone,
            a_holder_never_waits_on_a_permanent_ticket,
        );
        $crate::conformance_checks!($make, document, (flavor = "multi_thread");
            document_starts_absent,
            document_versions_grow_by_one_with_every_write,
            document_holds_any_json,
            document_write_on_another_version_conflicts_and_writes_nothing,
            document_concurrent_writers_of_one_version_have_one_winner,
            document_update_helper_retries_until_it_wins,
            document_update_helper_writes_nothing_when_nothing_changes,
            document_identical_writes_write_nothing,
            document_remove_and_recreate,
            document_wrong_types_change_nothing,
            document_size_limit,
            document_invalid_ids,
            document_change_stream_reports_diffs_and_folds,
            document_change_stream_from_an_older_version,
            document_change_stream_never_goes_back,
            document_watcher_sees_versions_rise_and_ends_on_the_last,
        );
        // The cached reader's check pauses tokio's clock, which needs a
        // runtime of one thread.
        $crate::conformance_checks!($make, document, (flavor = "current_thread");
            document_cached_reader_fails_once_stale,
        );
        $crate::conformance_checks!($make, tally, (flavor = "multi_thread", worker_threads = 8);
            tally_starts_at_zero_and_adds_up_and_down,
            tallies_are_independent,
            tally_remove,
            tally_overflow_is_refused_and_changes_nothing,
            tally_on_counter_or_queue_is_wrong_type,
            counter_or_queue_on_tally_is_wrong_type,
            tally_ids_are_validated,
            concurrent_adds_of_mixed_signs_sum_exactly,
            stale_reads_never_run_ahead_of_fresh_ones,
        );
        $crate::conformance_checks!($make, claim, (flavor = "multi_thread", worker_threads = 4);
            claims_take_the_first_free_candidate_in_order,
            a_claim_again_returns_the_same_claim_and_writes_nothing,
            a_released_name_is_free_and_the_lowest_freed_is_reused,
            exhaustion_names_the_pool_and_the_candidates_and_writes_nothing,
            every_claim_release_and_expiry_adds_one_to_the_token,
            an_absent_pool_reads_empty_and_releases_nothing,
            claims_are_listed_by_name_numbers_numerically,
            claim_pool_remove,
            claim_pools_and_other_kinds_are_wrong_type,
            claim_input_is_checked_and_changes_nothing,
            concurrent_claims_get_distinct_first_free_names,
            concurrent_claims_and_releases_lose_nothing,
            leased_claims_show_their_lease_and_renew_without_a_write,
            a_claim_renewal_that_reads_sees_the_pool_as_it_left_it,
            a_claim_holder_removes_a_claim_left_unrenewed_for_a_full_lease,
            renewal_of_a_claim_not_held_is_lease_lost,
            a_leased_claim_is_removed_only_after_a_full_observed_lease,
            a_claim_removal_loses_to_a_renewal_that_came_first,
            a_claim_holder_keeps_its_claim_while_observers_watch,
            the_claim_holder_learns_of_loss_before_anyone_removes_it,
            a_waiting_claimer_gets_a_dead_holders_name_with_a_larger_token,
            permanent_claims_never_expire,
            claim_tags_round_trip_and_are_checked,
            a_holders_claim_sent_again_is_harmless_and_others_are_refused,
            two_claim_holders_of_one_owner_never_hold_at_once,
            a_lost_claim_holder_leaves_the_next_holders_claim_alone,
            a_roster_is_sealed_at_its_size_and_full_refuses_non_members,
            a_roster_size_is_refused_where_it_cannot_hold,
            concurrent_claimers_fill_a_roster_and_no_more,
            waiting_for_a_roster_times_out_or_finds_its_claim_gone,
        );
        $crate::conformance_checks!($make, change, (flavor = "multi_thread", worker_threads = 4);
            pushes_says_whether_the_store_tells_of_changes,
            a_write_by_another_handle_wakes_a_queue_waiter,
            a_write_by_another_handle_wakes_a_claim_pool_waiter,
            a_write_by_another_handle_wakes_a_document_waiter,
            a_stale_version_returns_true,
            no_change_returns_false_at_until,
            change_checks_on_another_kind_are_wrong_type,
            a_waiter_leads_once_the_head_leaves_without_polling,
            a_claimer_gets_a_released_name_without_polling,
            a_change_stream_reports_a_write_without_polling,
        );
    };
}

/// The one expansion every section uses: each named check of
/// `conformance::$section` becomes a test on the runtime `$runtime` (the
/// arguments of `#[tokio::test]`, in parentheses).
#[macro_export]
macro_rules! conformance_checks {
    ($make:expr, $section:ident, $runtime:tt; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test $runtime]
            async fn $check() {
                let (store, _guard) = $make.await;
                $crate::conformance::$section::$check(store).await;
            }
        )*
    };
}

pub type S = Arc<dyn Store>;

pub fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn kind<T: std::fmt::Debug>(r: monotone::Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.kind(),
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls often, so tests do not wait on the default second.
pub fn quick() -> WaitOptions {
    WaitOptions::new().with_poll(ms(10), ms(50))
}

/// Run `task(i)` for every `i` below `n`, each in a task of its own, all
/// started together (each waits for all the others first, so that their
/// calls overlap on the runtime's threads as much as the machine allows);
/// what they returned, in the order of `i`. `task` is called here, before
/// the tasks start, so it may take handles from the store.
pub async fn together<T, Fut>(n: usize, task: impl Fn(usize) -> Fut) -> Vec<T>
where
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let start = Arc::clone(&start);
            let work = task(i);
            tokio::spawn(async move {
                start.wait().await;
                work.await
            })
        })
        .collect();
    let mut done = Vec::with_capacity(n);
    for h in handles {
        done.push(h.await.unwrap());
    }
    done
}
