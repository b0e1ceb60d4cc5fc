"""A Prefect flow whose transform step is chosen by a flag, through OpenFeature.

    pip install -e ".[openfeature,prefect]"
    python examples/prefect_flow.py --bootstrap localhost:9092 --customer acme

The flow reads the flag states with :class:`~controller.sdk.sync.SyncFlags`
(Prefect tasks are plain functions on worker threads: no event loop needed)
and evaluates ``etl.vectorized-transform`` for the customer through the
OpenFeature provider, whose hook emits the exposure. The transform step's
outcome (error, latency) is reported with ``provider.measure``, and the rows
it produced with ``client.track``. Every event carries the task run's id as
its idempotency key: a retried task sends the same ids, so the retry is not
counted again (the first attempt's outcome is the one counted).
``--fail-first-attempts`` makes the transform fail that many times, to see it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagEvaluationOptions
from openfeature.track import TrackingEventDetails
from prefect import flow, task
from prefect.runtime import task_run

from controller.sdk.openfeature import IDEMPOTENCY_KEY, RolloutProvider
from controller.sdk.sync import SyncFlags
from controller.settings import KafkaSettings, TopicSettings

FLAG = "etl.vectorized-transform"
DOMAIN = "prefect-etl"
Row = dict[str, float]


class FlakyDependency(Exception):
    """The injected failure of a transform attempt."""


def transform_loop(rows: list[Row]) -> list[Row]:
    """The current transform: one row at a time."""
    out = []
    for row in rows:
        out.append({"amount": row["amount"], "with_tax": round(row["amount"] * 1.2, 2)})
    return out


def transform_vectorized(rows: list[Row]) -> list[Row]:
    """The candidate behind the flag: the same result, built in one pass."""
    return [{"amount": r["amount"], "with_tax": round(r["amount"] * 1.2, 2)} for r in rows]


@task(retries=2, retry_delay_seconds=0)
def transform(customer: str, rows: list[Row], fail_first_attempts: int = 0) -> list[Row]:
    """Pick the transform by flag, run it measured, report the rows it produced."""
    client = api.get_client(DOMAIN)
    provider = client.provider
    assert isinstance(provider, RolloutProvider)
    key = str(task_run.id)  # the same for every attempt of this task run
    context = EvaluationContext(targeting_key=customer)
    options = FlagEvaluationOptions(hook_hints={IDEMPOTENCY_KEY: key})
    details = client.get_boolean_details(FLAG, False, context, options)
    with provider.measure(details, customer, key=key):
        if task_run.run_count <= fail_first_attempts:
            raise FlakyDependency(f"attempt {task_run.run_count} failed")
        out = (transform_vectorized if details.value else transform_loop)(rows)
    tracked = TrackingEventDetails(value=len(out), attributes={IDEMPOTENCY_KEY: key})
    client.track("rows_transformed", context, tracked)
    return out


@flow
def etl(
    customer: str,
    rows: list[Row],
    *,
    bootstrap: str = "localhost:9092",
    flag_topic: str = TopicSettings().flag_state,
    events_topic: str = TopicSettings().events,
    fail_first_attempts: int = 0,
) -> dict[str, Any]:
    """Transform ``rows`` for ``customer``; returns a summary with the SDK's counters."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    with SyncFlags(kafka, flag_topic=flag_topic, events_topic=events_topic) as flags:
        flags.wait_loaded(10)  # start-up only; an unloaded provider serves the default
        api.set_provider_and_wait(RolloutProvider(flags, ready_timeout=0), DOMAIN)
        out = transform(customer, rows, fail_first_attempts)
        arm, version = flags.arm(FLAG, customer)
    return {
        "arm": arm.value,
        "flag_version": version,
        "rows": len(out),
        "sent": flags.sent,
        "repeated": flags.events.repeated,
        "dropped": sum(flags.dropped.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="localhost:9092", help="Kafka host:port")
    parser.add_argument("--customer", default="acme", help="the unit the flag is bucketed by")
    parser.add_argument("--rows", type=int, default=1000, help="how many rows to transform")
    parser.add_argument("--fail-first-attempts", type=int, default=0, help="injected failures")
    args = parser.parse_args()
    rows = [{"amount": float(i)} for i in range(args.rows)]
    summary = etl(
        args.customer,
        rows,
        bootstrap=args.bootstrap,
        fail_first_attempts=args.fail_first_attempts,
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
