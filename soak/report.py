"""The run's summary: what was sent and answered, the faults, what was stored and alerted, and
each invariant with the violations that broke it."""
from __future__ import annotations

import collections
import statistics
from typing import Any

from soak.checker import Verdict
from soak.facts import Facts
from soak.fault_schedule import FAULT_KINDS, Fault
from soak.load import Sent

EXAMPLES = 5


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarize(sent: list[Sent], facts: Facts, verdict: Verdict, faults: list[Fault],
              run: dict[str, Any]) -> dict[str, Any]:
    heartbeats = [request for request in sent if request.kind is not None]
    reads = [request for request in sent if request.kind is None]
    accepted = [request for request in heartbeats if request.answered_2xx]
    timed = [request.seconds for request in heartbeats
             if request.status is not None and "body" not in request.form]
    during_slow = [request.seconds for request in heartbeats
                   if request.status is not None and "body" not in request.form
                   and (request.during or "").startswith("slow_clients")]
    alerts_delivered = collections.Counter(alert.event for alert in facts.alerts
                                           if alert.state == "delivered")
    delivery_lag = [(alert.delivered_at - alert.created_at).total_seconds()
                    for alert in facts.alerts if alert.delivered_at is not None]
    sink_answers: collections.Counter = collections.Counter()
    for answers in facts.sink_answers.values():
        sink_answers.update(answers)
    return {
        "run": run,
        "heartbeats_sent": len(heartbeats),
        "heartbeats_by_answer": dict(collections.Counter(r.answer for r in heartbeats)
                                     .most_common()),
        "heartbeats_by_form": dict(collections.Counter(r.form for r in heartbeats)
                                   .most_common()),
        "management_reads_by_answer": dict(collections.Counter(r.answer for r in reads)
                                           .most_common()),
        "faults_by_kind": {kind: count for kind in FAULT_KINDS if (count := sum(
            1 for fault in faults if fault.kind == kind and fault.started is not None
            and not fault.outcome.startswith("not injected")))},
        "faults_not_injected": [f"{fault.kind} at +{fault.at} s: {fault.outcome}"
                                for fault in faults if fault.outcome.startswith("not injected")],
        "sink_answers": {str(name): count for name, count in sorted(
            sink_answers.items(), key=lambda item: str(item[0]))},
        "accepted": len(accepted),
        "losses": sum(1 for r in accepted if not facts.heartbeats.get(r.token)),
        "duplicates": sum(1 for stored in facts.heartbeats.values() if len(stored) > 1),
        "answer_seconds": {"p50": round(_percentile(timed, 0.5), 3),
                           "p99": round(_percentile(timed, 0.99), 3),
                           "max": round(max(timed, default=0.0), 3),
                           "p99_during_slow_clients": round(_percentile(during_slow, 0.99), 3)},
        "incidents": len(facts.incidents),
        "incidents_by_reason": dict(collections.Counter(i.reason for i in facts.incidents)),
        "alerts_delivered": dict(alerts_delivered),
        "alert_delivery_seconds": {
            "median": round(statistics.median(delivery_lag), 2) if delivery_lag else 0,
            "max": round(max(delivery_lag, default=0.0), 2)},
        "delivery_attempts_by_outcome": dict(facts.attempt_outcomes),
        "resent_keys": len(verdict.resends),
        "resends": verdict.resends,
        "stored_though_answered_503_as_the_database_went_away": verdict.unknown_commits,
        "errors_logged_by_type": dict(facts.error_types),
        "invariants": {name: {"holds": not found, "violations": len(found),
                              "examples": found[:EXAMPLES]}
                       for name, found in verdict.violations.items()},
        "holds": verdict.holds,
    }


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name}: {count:,}" for name, count in counts.items()) or "none"


def render(summary: dict[str, Any]) -> str:
    run = summary["run"]
    seconds = summary["answer_seconds"]
    lines = [
        f"Soak of {run['minutes']} min, seed {run['seed']}: {run['applications']} applications "
        f"({_counts(run['behaviours'])}), {run['workers']} gunicorn workers, alert sinks "
        f"{_counts(collections.Counter(run['channels'].values()))}.",
        f"Heartbeats sent: {summary['heartbeats_sent']:,}; answered: "
        f"{_counts(summary['heartbeats_by_answer'])}.",
        f"Management reads: {_counts(summary['management_reads_by_answer'])}.",
        f"Faults injected: {_counts(summary['faults_by_kind'])}.",
        f"Sink answers: {_counts(summary['sink_answers'])}.",
        f"Accepted (2xx): {summary['accepted']:,}; losses: {summary['losses']}; "
        f"duplicates: {summary['duplicates']}.",
        f"Heartbeat answer time: p50 {seconds['p50']} s, p99 {seconds['p99']} s, max "
        f"{seconds['max']} s; p99 while slow clients were connected "
        f"{seconds['p99_during_slow_clients']} s.",
        f"Incidents: {summary['incidents']} ({_counts(summary['incidents_by_reason'])}); "
        f"alerts delivered: {_counts(summary['alerts_delivered'])}; Idempotency-Keys received "
        f"more than once (resends): {summary['resent_keys']}; delivery after creation: "
        f"median {summary['alert_delivery_seconds']['median']} s, max "
        f"{summary['alert_delivery_seconds']['max']} s.",
        f"Delivery attempts: {_counts(summary['delivery_attempts_by_outcome'])}.",
        f"Answered 503 as the database went away (commit's answer lost, spool full), yet "
        f"stored once: {len(summary['stored_though_answered_503_as_the_database_went_away'])}.",
        f"Errors logged by the service: {_counts(summary['errors_logged_by_type'])}.",
    ]
    for fault in summary["faults_not_injected"]:
        lines.append(f"Not injected: {fault}")
    lines.append("Invariants:")
    for name, result in summary["invariants"].items():
        mark = "holds" if result["holds"] else f"BROKEN ({result['violations']:,})"
        lines.append(f"  {mark:>14}  {name}")
        lines += [f"{'':18}- {example}" for example in result["examples"]]
    lines.append("All invariants hold." if summary["holds"] else "Some invariants are broken.")
    return "\n".join(lines)
