"""``memstream bench forgetting|recall|drift|consolidate|ingest``: numbers on screen, JSON, Markdown, plots."""

from __future__ import annotations

import random
import shlex
import sys
import tempfile
from pathlib import Path

import click
from tqdm import tqdm

from memstream.cli.common import bootstrap_option, config_options, open_config, open_stream_config

OUT_FILE = click.Path(path_type=Path, dir_okay=False)


def _outputs(func):
    func = click.option("--markdown", "markdown_out", type=OUT_FILE, default=None,
                        help="Write a Markdown report here.")(func)
    return click.option("--json", "json_out", type=OUT_FILE, default=None, help="Write the results here as JSON.")(func)


def _command_line() -> str:
    return "memstream " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _names(text: str) -> list[str]:
    """The non-empty items of a comma-separated option."""
    return [s.strip() for s in text.split(",") if s.strip()]


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in _names(text)]
    except ValueError:
        raise click.BadParameter(f"seeds must be comma-separated integers, got {text!r}") from None


@click.group("bench")
def bench_group() -> None:
    """Benchmarks that print numbers (and write JSON), measured against baselines in the same run."""


@bench_group.command("ingest")
@click.option("--events", "n", type=int, default=20000, show_default=True, help="Events per measurement.")
@click.option("--profiles", type=int, default=6, show_default=True)
@_outputs
@bootstrap_option()
@config_options
def ingest_command(n: int, profiles: int, json_out: Path | None, markdown_out: Path | None, bootstrap: str | None,
                   config_file, overrides) -> None:
    """Events/s through the broker and the ingest app vs a plain consumer, idle and while training.

    Without --bootstrap an embedded broker is started for the run.
    """
    from memstream.bench.ingest import bench_ingest
    from streams.broker import EmbeddedBroker, free_port

    work = Path(tempfile.mkdtemp(prefix="memstream-bench-"))
    broker = None
    if bootstrap is None and not any(o.startswith("kafka.bootstrap=") for o in overrides):
        broker = EmbeddedBroker(work / "broker", free_port()).start()
        bootstrap = broker.bootstrap
    try:
        config = open_stream_config(config_file, overrides, bootstrap)
        results = bench_ingest(config.kafka, work, n=n, profiles=profiles)
    finally:
        if broker is not None:
            broker.stop()
    from memstream.bench.report import markdown_table, table, write_outputs

    headers = ["path", "events/s"]
    rows = [["plain kafka-python consumer", round(results["plain"]["rate"])],
            ["ingest app, no consolidation", round(results["ingest_idle"]["rate"])],
            ["ingest app, consolidations running", round(results["ingest_busy"]["rate"])]]
    summary = (f"ratio ingest/plain: {results['ratio_idle_vs_plain']:.2f} (target >= 0.70); "
               f"ratio busy/idle: {results['ratio_busy_vs_idle']:.2f} (target >= 0.50); "
               f"runs during busy: {results['ingest_busy']['runs']}")
    click.echo(table(headers, rows))
    click.echo(summary)
    markdown = "\n".join(["# Ingest benchmark", "", f"Command: `{_command_line()}`", "",
                          markdown_table(headers, rows), "", summary])
    write_outputs(results, json_out, markdown_out, markdown)


@bench_group.command("forgetting")
@click.argument("events_file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option("--strategies", default="naive,replay,ewc,replay+ewc,joint", show_default=True,
              help="Comma-separated: naive, replay, ewc, replay+ewc, joint.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds (spread is over these).")
@click.option("--steps", type=int, default=100, show_default=True, help="LoRA optimizer steps per stage.")
@click.option("--foundation-steps", type=int, default=400, show_default=True)
@click.option("--eval-per-domain", "n_eval", type=int, default=100, show_default=True,
              help="Held-out events per domain.")
@click.option("--foundation-per-domain", "n_foundation", type=int, default=200, show_default=True)
@click.option("--train-per-domain", "n_train", type=int, default=700, show_default=True)
@click.option("--foundation-cache", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Keep trained foundations here and reuse them when everything that shapes them is the same.")
@click.option("--plots", "plots_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write the PNG plots into this directory.")
@_outputs
@config_options
def forgetting_command(events_file: Path | None, strategies: str, seeds: str, steps: int, foundation_steps: int,
                       n_eval: int, n_foundation: int, n_train: int, foundation_cache: Path | None,
                       plots_dir: Path | None, json_out: Path | None,
                       markdown_out: Path | None, config_file, overrides) -> None:
    """Forgetting, plasticity, BWT/FWT of each strategy on EVENTS_FILE (JSONL with meta.domain).

    Without EVENTS_FILE the public benchmark stream is used (docs/benchmarks.md).
    """
    from memstream.bench.forgetting import check_strategies, progress_total, run_forgetting
    from memstream.bench.foundation import split_domains
    from memstream.bench.report import FORGETTING_HEADERS, forgetting_markdown, forgetting_rows, plot_forgetting, \
        table, write_outputs

    from memstream.samples.public_stream import CORE_DOMAINS

    config = open_config(config_file, overrides)
    names = _names(strategies)
    seed_list = _seeds(seeds)
    events = _events(events_file)
    if events_file is None:  # the four clearly different domains: a stage each
        events = [e for e in events if e.domain in CORE_DOMAINS]
    try:
        check_strategies(names)
        n_domains = len(split_domains(events, n_eval, n_foundation, n_train).domains)  # fails early on a bad file
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    with tqdm(total=progress_total(n_domains, names, seed_list), unit="stage", file=sys.stderr,
              dynamic_ncols=True) as bar:
        results = run_forgetting(events, config, names, seed_list, steps=steps, foundation_steps=foundation_steps,
                                 n_eval=n_eval, n_foundation=n_foundation, n_train=n_train,
                                 foundation_cache=foundation_cache, progress=bar.update, log=bar.write)
    unit = results["setup"]["loss_unit"]
    click.echo(f"held-out loss in {unit}; forgetting: lower is better; ± = std over seeds {seed_list}")
    click.echo(table(FORGETTING_HEADERS, forgetting_rows(results)))
    acc = results["acceptance"]
    for name, value in acc["values"].items():
        target = acc["targets"].get(name)
        met = acc["met"].get(name)
        click.echo(f"{name}: {'-' if value is None else f'{value:.3f}'}"
                   + (f" (target {target}: {'met' if met else 'missed'})" if target and met is not None else ""))
    plots = plot_forgetting(results, plots_dir) if plots_dir is not None else []
    for path in plots:
        click.echo(f"plot: {path}")
    write_outputs(results, json_out, markdown_out, forgetting_markdown(results, plots, _command_line()))


@bench_group.command("recall")
@click.option("--strategies", default="naive,replay,replay+ewc,joint,memstream", show_default=True,
              help="Comma-separated: naive, replay, replay+ewc, joint, memstream, replay+progressive, replay+ewc+paraphrase.")
@click.option("--seeds", default="0,1", show_default=True, help="Comma-separated seeds: one made-up person each.")
@click.option("--phases", type=int, default=3, show_default=True)
@click.option("--facts-per-phase", type=int, default=10, show_default=True)
@click.option("--people", type=click.Choice(["facts", "diary", "wider"]), default="facts", show_default=True,
              help="Who tells the facts: facts (3 themes of 10 facts), diary (4 of 8) or wider (facts, 4 of 20).")
@click.option("--plots", "plots_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write the PNG plot into this directory.")
@_outputs
@config_options
def recall_command(strategies: str, seeds: str, phases: int, facts_per_phase: int, people: str, plots_dir: Path | None,
                   json_out: Path | None, markdown_out: Path | None, config_file, overrides) -> None:
    """Does it remember what it was told, and keep it? Facts about a made-up person in phases, asked back in
    other words after each phase; recall per phase, retention, and the base's general-text loss."""
    from memstream.bench.recall import PEOPLE, check_strategies, progress_total, run_recall
    from memstream.bench.report import RECALL_HEADERS, plot_recall, recall_markdown, recall_rows, table, \
        write_outputs

    config = open_config(config_file, overrides)
    names, seed_list = _names(strategies), _seeds(seeds)
    try:
        check_strategies(names)
        PEOPLE[people](0, phases, facts_per_phase)  # phases and facts per phase that the people have
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    with tqdm(total=progress_total(names, seed_list, phases), unit="phase", file=sys.stderr, dynamic_ncols=True) as bar:
        results = run_recall(config, names, seed_list, phases, facts_per_phase, progress=bar.update, log=bar.write,
                             people=people)
    click.echo(table(RECALL_HEADERS, recall_rows(results)))
    acc = results["acceptance"]
    for name, value in acc["values"].items():
        click.echo(f"{name}: {value:.3f} (target {acc['targets'][name]}: {'met' if acc['met'][name] else 'missed'})")
    plots = plot_recall(results, plots_dir) if plots_dir is not None else []
    write_outputs(results, json_out, markdown_out, recall_markdown(results, plots, _command_line()))


@bench_group.command("drift")
@click.argument("events_file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option("--detectors", default="memstream,kl,adwin,page-hinkley,kswin,always", show_default=True,
              help="Comma-separated: memstream, kl, adwin, page-hinkley, kswin, always.")
@click.option("--seeds", default="0,1", show_default=True, help="One set of streams per seed.")
@click.option("--before", "n_before", type=int, default=700, show_default=True, help="Events before each switch.")
@click.option("--after", "n_after", type=int, default=500, show_default=True, help="Events after each switch.")
@click.option("--ramp", type=int, default=1000, show_default=True,
              help="Events over which a gradual drift's mixture goes from 0% to 100% of the new domain.")
@click.option("--recur", "recur_len", type=int, default=1000, show_default=True,
              help="Events of B in each A -> B -> A stream.")
@click.option("--stationary", "stationary_len", type=int, default=20_000, show_default=True,
              help="Events in each stationary stream.")
@_outputs
@config_options
def drift_command(events_file: Path | None, detectors: str, seeds: str, n_before: int, n_after: int, ramp: int,
                  recur_len: int, stationary_len: int, json_out: Path | None, markdown_out: Path | None, config_file,
                  overrides) -> None:
    """Detection delay, missed switches and false alarms of memstream's detector (KL + surprise), its KL
    signal alone, river's detectors and an always-firing reference, on abrupt, similar-domain, gradual
    and recurring switches and on stationary streams.

    Without EVENTS_FILE the public benchmark stream (8 domains) is used.
    """
    from memstream.bench.drift import TARGETS, ingest_cost, progress_total, run_drift
    from memstream.bench.report import drift_markdown, drift_rows, table, DRIFT_HEADERS, write_outputs

    config = open_config(config_file, overrides)
    events = _events(events_file)
    names = _names(detectors)
    seed_list = _seeds(seeds)
    try:
        total = progress_total(events, names, seed_list, n_before, n_after, stationary_len, ramp, recur_len)
        with tqdm(total=total, unit="ev", unit_scale=True, file=sys.stderr, dynamic_ncols=True) as bar:
            results = run_drift(events, config.drift, names, seed_list, n_before, n_after, stationary_len, ramp,
                                recur_len, progress=bar.update)
        if "memstream" in names:  # what detection adds to learn_one, on the same events shuffled
            mixed = random.Random(seed_list[0]).sample(events, min(len(events), 4000 + config.drift.baseline_size))
            results["ingest_cost"] = ingest_cost(mixed, [*overrides, "model.base=memstream-byte"])
            results["checks"]["drift_us_per_event"] = round(results["ingest_cost"]["drift_us_per_event"], 1)
            results["checks"]["ingest_cost_ok"] = (results["ingest_cost"]["drift_us_per_event"]
                                                   <= TARGETS["max_drift_us_per_event"])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(table(DRIFT_HEADERS, drift_rows(results)))
    for name, value in results["checks"].items():
        click.echo(f"{name}: {value}")
    write_outputs(results, json_out, markdown_out, drift_markdown(results, _command_line()))


def _events(events_file: Path | None):
    """The events of a JSONL file (a bad line is an error naming it), or the public benchmark stream."""
    from contracts.events import read_jsonl
    from memstream.samples.public_stream import load_public_stream

    if events_file is None:
        return load_public_stream()
    events = []
    for line_no, event, error in read_jsonl(events_file):
        if error is not None:
            raise click.ClickException(f"{events_file}:{line_no + 1}: {error}")
        events.append(event)
    return events


@bench_group.command("consolidate")
@click.option("--repeats", type=int, default=3, show_default=True, help="Timed repetitions (medians are reported).")
@click.option("--small", type=int, default=1_000, show_default=True, help="Events ingested before the 'small' runs.")
@click.option("--large", type=int, default=100_000, show_default=True, help="Events ingested before the 'large' runs.")
@click.option("--batch-new", type=int, default=200, show_default=True, help="New events per timed consolidation.")
@click.option("--skip-flat", is_flag=True, help="Only the step, Fisher and load-once timings.")
@_outputs
@config_options
def consolidate_command(repeats: int, small: int, large: int, batch_new: int, skip_flat: bool,
                        json_out: Path | None, markdown_out: Path | None, config_file, overrides) -> None:
    """Seconds per LoRA step of memstream's loop vs a bare PEFT loop on the same batches, EWC's overhead,
    Fisher time, the base loaded once over several runs, and consolidation time after SMALL vs LARGE
    ingested events (must be flat)."""
    from memstream.samples.public_stream import load_public_stream
    from memstream.bench.consolidate import bench_fisher, bench_flat, bench_load_once, bench_step
    from memstream.bench.report import markdown_table, table, write_outputs

    config = open_config(config_file, overrides)
    events = load_public_stream()[::31][:128]  # a mix of the four core domains
    with tqdm(total=repeats + (0 if skip_flat else repeats), unit="run", file=sys.stderr,
              dynamic_ncols=True) as bar:
        results = {"step": bench_step(config, events, repeats=repeats, progress=bar.update),
                   "fisher": bench_fisher(config, events, repeats=repeats),
                   "load_once": bench_load_once(config, events)}
        if not skip_flat:
            results["flat"] = bench_flat(small, large, batch_new, repeats, progress=bar.update)
    step, fisher, once = results["step"], results["fisher"], results["load_once"]
    headers = ["measure", "value", "baseline", "ratio", "target"]
    rows = [["seconds per LoRA step, memstream vs bare PEFT loop", step["seconds_per_step_memstream"],
             step["seconds_per_step_bare_peft"], step["memstream_over_bare_ratio"], "<= 1.15"],
            ["seconds per LoRA step, EWC vs plain", step["seconds_per_step_memstream_ewc"],
             step["seconds_per_step_memstream"], step["ewc_overhead_ratio"], "<= 1.10"],
            [f"Fisher seconds ({fisher['fisher_examples']} examples, {fisher['fisher_method']})",
             fisher["fisher_seconds"], None, None, "-"],
            ["base loads after two runs of two profiles", once["base_loads_after_two_runs"], None, None, "1"],
            [f"LoRA step MFU, share of the {step['matmul_gflops']:.0f} GFLOP/s {step['matmul_dtype']} matmul rate "
             f"on {step['device']} (memstream vs bare)", step["ours_mfu"], step["bare_mfu"], None, ">= 0.50"],
            ["padded share of the tokens computed (memstream vs bare)", step["ours_padding_share"],
             step["bare_padding_share"], None, "<= 0.10"]]
    if "flat" in results:
        flat = results["flat"]
        rows.append([f"consolidation seconds after {large:,} vs {small:,} events", flat["consolidation_s_large"],
                     flat["consolidation_s_small"], flat["ratio_large_over_small"], "~ 1 (flat)"])
    click.echo(table(headers, rows))
    markdown = "\n".join(["# Consolidation benchmark", "", f"Command: `{_command_line()}`", "",
                          markdown_table(headers, rows)])
    write_outputs(results, json_out, markdown_out, markdown)
