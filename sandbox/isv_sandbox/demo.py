"""The demo: each tap reads its sandbox API through `meltano run` into DuckDB, then dbt
builds the marts on that file.

Run it with ``scripts/demo``. No credentials and no server to install: the sandboxes
start on free loopback ports inside this process, and the warehouse is the file
``output/warehouse.duckdb``. It ends with the last twelve months of MRR and its
movements per app, the evaluations that converted, how many of Atlassian's monthly
reports agree with the raw rows (the reconciliation mart), the most used features, and
``output/mrr_by_month.png``.

The three taps run at once, as the nightly jobs do. DuckDB takes one writer at a time,
so each run loads its own file (``output/demo-<tap>.duckdb``) and the tables are then
copied into the warehouse; each run also has its own Meltano system database (an
SQLite file beside it), since three processes writing one SQLite file may find it
locked. The runs are full refreshes: no state is kept from one demo to the next.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import yaml

import isv_sandbox
from isv_sandbox.meltano import meltano_env

#: The Meltano project the demo runs: the working directory (scripts/demo runs from the repository root).
REPO = Path(os.environ.get("MELTANO_PROJECT_ROOT") or Path.cwd()).resolve()
MELTANO = Path(sys.executable).parent / "meltano"
#: The day every figure is as of: the sandboxes' last day of data.
AS_OF = "2026-06-30"
#: The reports (sales, churn, conversion, renewal) are Atlassian's aggregates of the same
#: rows, asked for from this day on (the twelve months to the as-of day and the months
#: since), so the reconciliation mart lines them up with the raw rows.
REPORTS_SINCE = "2025-07-01"
#: Days from REPORTS_SINCE to today: where the sandbox's reports start (it serves them up
#: to the real date) and where the tap asks from (its `report_history_days`).
REPORT_DAYS = (datetime.datetime.now(datetime.timezone.utc).date()
               - datetime.date.fromisoformat(REPORTS_SINCE)).days
#: More sales than the sandbox's default, so that MRR has a shape worth a chart; the
#: sales are license histories (renewals, upgrades, downgrades, returns, lapses and
#: returns after a gap), so every MRR movement shows. ISVapp's usage is not pinned: the
#: tap asks for the latest completed month by today's date, so the features table is of
#: last month (it says which).
#: Every cloud license event of those histories is served (events_per_kind None), each
#: naming a license the sandbox exports.
SANDBOX_SETTINGS = {"marketplace": {"licenses": 1200, "transactions": 1500,
                                    "first_day": "2019-07-01", "last_day": AS_OF,
                                    "events_per_kind": None,
                                    "extra": {"report_history_days": REPORT_DAYS}}}
TAP_SETTINGS = {"tap-marketplace": {"TAP_MARKETPLACE_REPORT_HISTORY_DAYS": str(REPORT_DAYS)}}


def configured_taps() -> set[str]:
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    return {plugin["name"] for plugin in project["plugins"]["extractors"]}


def main() -> int:
    output = REPO / "output"
    output.mkdir(exist_ok=True)
    database = output / "warehouse.duckdb"
    database.unlink(missing_ok=True)
    taps = configured_taps()
    runs = {}  # tap -> (sandbox, meltano process, its log, its DuckDB file, start time)
    for vendor, (_, _, tap) in isv_sandbox.VENDORS.items():
        if tap not in taps:
            continue
        schema = tap.replace("-", "_")
        log = output / f"demo-{tap}.log"
        own = output / f"demo-{tap}.duckdb"
        for stale in (own, own.with_suffix(".meltano.db")):
            stale.unlink(missing_ok=True)
        print(f"==> {tap}: sandbox API -> meltano run {tap} target-duckdb (log: {log.relative_to(REPO)})",
              flush=True)
        server = isv_sandbox.start(vendor, **SANDBOX_SETTINGS.get(vendor, {}))
        with log.open("w") as log_file:
            process = subprocess.Popen(  # noqa: S603
                [str(MELTANO), "run", "--full-refresh", "--state-id-suffix", "demo", tap,
                 "target-duckdb"],
                cwd=REPO, env=meltano_env(REPO, tap, server.app.tap_config(), {
                    "MELTANO_DATABASE_URI": f"sqlite:///{own.with_suffix('.meltano.db')}",
                    "TARGET_DUCKDB_FILEPATH": str(own),
                    "TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA": schema, **TAP_SETTINGS.get(tap, {})}),
                stdout=log_file, stderr=subprocess.STDOUT,
            )
        runs[tap] = (server, process, log, own, time.monotonic())
    timings: dict[str, float] = {}
    while len(timings) < len(runs):
        for tap, (_, process, _, _, started) in runs.items():
            if tap not in timings and process.poll() is not None:
                timings[tap] = time.monotonic() - started
        time.sleep(0.05)
    failed = []
    for tap, (server, process, log, _, _) in runs.items():
        server.stop()
        if process.returncode != 0:
            print(log.read_text()[-4000:], file=sys.stderr)
            print(f"FAILED: {tap} (exit {process.returncode}); see {log}", file=sys.stderr)
            failed.append(process.returncode)
    if failed:
        return failed[0]

    with duckdb.connect(str(database)) as warehouse:
        for tap, (_, _, _, own, _) in runs.items():
            schema = tap.replace("-", "_")
            warehouse.execute(f"ATTACH '{own}' AS loaded (READ_ONLY)")
            warehouse.execute(f'CREATE SCHEMA "{schema}"')
            for (table,) in warehouse.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_catalog = 'loaded' AND table_schema = ? ORDER BY table_name",
                    [schema]).fetchall():
                warehouse.execute(f'CREATE TABLE "{schema}"."{table}" AS '
                                  f'SELECT * FROM loaded."{schema}"."{table}"')
            warehouse.execute("DETACH loaded")
    for _, _, _, own, _ in runs.values():
        own.unlink()
        own.with_suffix(".meltano.db").unlink(missing_ok=True)

    print(f"\nLoaded into {database.relative_to(REPO)}:")
    with duckdb.connect(str(database), read_only=True) as db:
        tables = db.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "ORDER BY table_schema, table_name").fetchall()
        width = max((len(f"{s}.{t}") for s, t in tables), default=10)
        for schema, table in tables:
            rows = db.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
            print(f"  {f'{schema}.{table}':<{width}}  {rows:>9,} rows")
    for tap, seconds in timings.items():
        print(f"  {tap}: {seconds:.1f} s")
    return build_marts(database)


def build_marts(database: Path) -> int:
    """dbt build on the DuckDB file, then the marts: MRR, features, the chart."""
    log = REPO / "output" / "demo-dbt.log"
    print(f"\n==> meltano invoke dbt-duckdb:build (marts as of {AS_OF}; log: {log.relative_to(REPO)})",
          flush=True)
    started = time.monotonic()
    env = {**os.environ, "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
           "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_DUCKDB_PATH": str(database),
           "DBT_DUCKDB_SCHEMA": "analytics", "DBT_AS_OF_DATE": AS_OF}
    with log.open("w") as log_file:
        run = subprocess.run([str(MELTANO), "invoke", "dbt-duckdb:build"], cwd=REPO, env=env,  # noqa: S603
                             stdout=log_file, stderr=subprocess.STDOUT, check=False)
    summary = [line for line in log.read_text().splitlines() if "Done. PASS=" in line]
    print(f"  {summary[-1].split('  ', 1)[-1].strip() if summary else 'no summary'} "
          f"({time.monotonic() - started:.1f} s)")
    if run.returncode != 0:
        print(log.read_text()[-4000:], file=sys.stderr)
        print(f"FAILED: dbt build (exit {run.returncode}); see {log}", file=sys.stderr)
        return run.returncode
    with duckdb.connect(str(database), read_only=True) as db:
        print_mrr(db)
        print_evaluations(db)
        print_reconciliation(db)
        print_features(db)
        chart = REPO / "output" / "mrr_by_month.png"
        write_mrr_chart(db, chart)
        print(f"\nChart of MRR by month: {chart.relative_to(REPO)}")
    return 0


def print_mrr(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute("""
        select strftime(mrr_month, '%Y-%m'), app_name, mrr, new_mrr, expansion_mrr,
               contraction_mrr, churned_mrr, reactivation_mrr, paying_licenses
        from analytics.fct_marketplace_mrr
        where mrr_month > (select max(mrr_month) from analytics.fct_marketplace_mrr) - interval 12 month
        order by app_name, mrr_month""").fetchall()
    print(f"\nMarketplace MRR, the twelve months to {AS_OF} (USD, vendor amount; analytics.fct_marketplace_mrr).")
    print("  MRR: the run rate at the month's end (each sale line's amount over the month ends of its\n"
          "  period); new: licenses paying for the first time; expansion / contraction: paying more /\n"
          "  less than the month before; churn: stopped paying; reactivation: paying again after a\n"
          "  lapse; licenses: licenses paying at the month's end.")
    header = ("month", "app", "MRR", "new", "expansion", "contraction", "churn", "reactivation",
              "licenses")
    print("  {:<7}  {:<13} {:>10} {:>9} {:>9} {:>11} {:>9} {:>12} {:>8}".format(*header))
    for month, app, *amounts, licenses in rows:
        print("  {:<7}  {:<13} {:>10,.2f} {:>9,.2f} {:>9,.2f} {:>11,.2f} {:>9,.2f} {:>12,.2f} {:>8}".format(
            month, app, *amounts, licenses))


def print_evaluations(db: duckdb.DuckDBPyConnection) -> None:
    """Evaluation-to-paid conversion of the evaluations started in the twelve months to the
    as-of day: from the conversion mart where it is built, else from the licenses' data
    insights (the staging model)."""
    mart = db.execute("select count(*) from information_schema.tables where table_schema = 'analytics' "
                      "and table_name = 'fct_marketplace_evaluation_conversion'").fetchone()[0]
    if mart:
        source = "analytics.fct_marketplace_evaluation_conversion"
        started, converted, average_days = db.execute("""
            select sum(evaluations_started), sum(evaluations_converted),
                   sum(average_days_to_convert * evaluations_converted) / nullif(sum(evaluations_converted), 0)
            from analytics.fct_marketplace_evaluation_conversion
            where scope = 'all' and evaluation_month > cast(? as date) - interval 12 month
              and evaluation_month <= cast(? as date)""", [AS_OF, AS_OF]).fetchone()
    else:
        source = "analytics_staging.stg_marketplace__licenses"
        started, converted, average_days = db.execute("""
            select count(*), count(evaluation_sale_date),
                   avg(case when evaluation_sale_date is not null then cast(days_to_convert_eval as integer) end)
            from analytics_staging.stg_marketplace__licenses
            where evaluation_start_date > cast(? as date) - interval 12 month
              and evaluation_start_date <= cast(? as date)""", [AS_OF, AS_OF]).fetchone()
    started, converted = int(started or 0), int(converted or 0)
    rate = f"{100 * converted / started:.1f} %" if started else "no evaluations"
    days = f", after {float(average_days):.1f} days on average" if average_days is not None else ""
    print(f"\nEvaluations (free trials) started in the twelve months to {AS_OF}, any hosting: {started};\n"
          f"  {converted} of them became paying licenses by the as-of day ({rate}{days}),\n"
          f"  the others expired or are still running ({source}).")


def print_reconciliation(db: duckdb.DuckDBPyConnection) -> None:
    """How many of Atlassian's monthly figures agree with the raw rows, by the warn test's
    rule at its default tolerances (docs/transform.md)."""
    rows = db.execute("""
        select measure, is_settled, count(*), count(case when difference = 0 then 1 end),
               count(case when abs(difference) <= case when measure = 'sales_revenue'
                   then greatest(1.00, 0.02 * abs(vendor_figure)) else greatest(1, 0.02 * abs(vendor_figure)) end
                   then 1 end),
               strftime(min(period_month), '%Y-%m'), strftime(max(period_month), '%Y-%m')
        from analytics.fct_marketplace_reconciliation
        where vendor_figure is not null
        group by all order by measure""").fetchall()
    settled = [row for row in rows if row[1]]
    pairs, exact, agreeing = (sum(row[i] for row in settled) for i in (2, 3, 4))
    unsettled = sum(row[2] for row in rows if not row[1])
    months = (f"{min(row[5] for row in settled)} to {max(row[6] for row in settled)}"
              if settled else "none")
    print(f"\nReconciliation as of {AS_OF} (analytics.fct_marketplace_reconciliation): Atlassian's monthly\n"
          "  reports (sales count and revenue, churned, converted and renewed cloud licenses) against\n"
          "  the same figures from the loaded transactions and license events, per app and month.\n"
          f"  Settled months (ended 7 days or more before the as-of day), {months}: {agreeing} of {pairs}\n"
          f"  pairs agree within the warn test's tolerance ({exact} exactly); {unsettled} pairs of later\n"
          "  months are not compared yet.")
    for measure, _, count, same, within, _, _ in settled:
        print(f"    {measure:<20} {within:>4} of {count:<4} agree ({same} exactly)")


def print_features(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute("""
        select strftime(usage_month, '%Y-%m'), taxonomy_item_label, count(*) as accounts,
               sum(unique_users), sum(operations), sum(operations_external)
        from analytics.fct_isvapp_feature_usage_monthly
        where usage_month = (select max(usage_month) from analytics.fct_isvapp_feature_usage_monthly)
        group by all order by sum(operations) desc limit 5""").fetchall()
    month = rows[0][0] if rows else "none"
    print(f"\nTop used features in ISVapp's latest completed month, {month} (by today's date, not\n"
          f"the Marketplace as-of day; analytics.fct_isvapp_feature_usage_monthly): accounts using\n"
          "  the feature, their distinct users, operations (all / by external users).")
    print("  {:<7}  {:<22} {:>8} {:>7} {:>11} {:>9}".format(
        "month", "feature", "accounts", "users", "operations", "external"))
    for row in rows:
        print("  {:<7}  {:<22} {:>8} {:>7,} {:>11,} {:>9,}".format(*row))


def write_mrr_chart(db: duckdb.DuckDBPyConnection, path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - only the demo draws, and only at its end

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    rows = db.execute("""select app_name, mrr_month, mrr from analytics.fct_marketplace_mrr
                         order by app_name, mrr_month""").fetchall()
    figure, axes = pyplot.subplots(figsize=(10, 4.5), dpi=100)
    apps = sorted({app for app, _, _ in rows})
    months = sorted({month for _, month, _ in rows})
    by_app = {app: {month: float(mrr) for name, month, mrr in rows if name == app} for app in apps}
    for app in apps:
        axes.plot(months, [by_app[app].get(m, 0.0) for m in months], label=app, linewidth=1.6)
    axes.plot(months, [sum(by_app[app].get(m, 0.0) for app in apps) for m in months],
              label="all apps", color="black", linewidth=2.2)
    axes.set_title(f"Marketplace MRR at each month's end, by app (as of {AS_OF}; sandbox data)")
    axes.set_ylabel("MRR, USD (vendor amount)")
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


if __name__ == "__main__":
    sys.exit(main())
