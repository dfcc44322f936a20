"""Thin Airflow operators over `wildocr.pipeline.shard`: parse arguments, resolve storage, call one function.

Every operator is idempotent (outputs are pure functions of run, dt and shard), so Airflow retries and
`airflow tasks clear` are safe. Heavy modules (pyarrow, ONNX Runtime, OpenCV) are imported inside
`execute`, never at DAG-parse time.

Modes (the shard spec's `mode`, from the DAG's `mode` Param):
- `staged`: detect -> crop -> recognize -> publish, one task each, intermediate Parquet under the run's
  staging prefix. A failed step retries alone, GPU steps run on GPU workers and cropping does not.
- `fused`: the detection task runs `process_shard` (the whole shard in one task, no staging round trips)
  and the other steps skip. Same task graph in both modes, so the UI, the pools and the tests see one
  DAG; the choice is made per run without a branch operator or a second copy of the tasks.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator, Variable, conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from wildocr.airflow import settings
from wildocr.airflow.browser.links import PartitionBrowserLink
from wildocr.airflow.hooks import storage_options_for

if TYPE_CHECKING:
    from airflow.sdk import Context

    from wildocr.engine import OCREngine

log = logging.getLogger(__name__)

IMAGES_ASSET = Asset(name="wildocr_images", uri=settings.IMAGES_ASSET_URI, group="wildocr")
WORDS_ASSET = Asset(name="wildocr_words", uri=settings.WORDS_ASSET_URI, group="wildocr")

# --- the OCR engine, once per process --------------------------------------------------------------------

_ENGINES: dict[str, OCREngine] = {}


def get_engine(options: Mapping[str, Any] | None = None) -> OCREngine:
    """The process's engine for these options (flat `EngineConfig.with_options` keys), loaded on first use.

    Loading the three ONNX sessions costs seconds; every task after the first one in the same process
    (dag.test, the demo, a worker that runs tasks in-process) reuses them. Each model loads on first use, so
    a staged task holds only the ones its stage runs (the crop task none).
    """
    from wildocr.engine import EngineConfig, OCREngine

    key = json.dumps(dict(options or {}), sort_keys=True, default=str)
    engine = _ENGINES.get(key)
    if engine is None:
        engine = OCREngine(EngineConfig().with_options(**dict(options or {})), lazy=True)
        _ENGINES[key] = engine
        log.info("OCR engine loaded on %s: %s", engine.provider, engine.model_info)
    return engine


# --- the plan a run shares between its tasks ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One mapped task's work: everything a shard task needs, so it never re-derives run settings."""

    dt: str
    shard: int
    mode: str
    source_prefix: str  # kept so that tasks pick storage options for the photos' store too
    manifest_url: str
    staging_root: str
    output_root: str
    run_id: str

    @property
    def label(self) -> str:
        return f"{self.dt} #{self.shard:05d}"

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> ShardSpec:
        if not isinstance(value, Mapping):
            raise AirflowFailException(f"expected a shard spec mapping from the manifest task, got {value!r}")
        return cls(**{k: value[k] for k in cls.__slots__})


def _unset(value: Any) -> bool:
    """Params render to None (native templates) or 'None'/'' (string templates) when not given."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "None"))


def _date(value: Any, what: str) -> _dt.date:
    try:
        return _dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise AirflowFailException(f"{what} must be a date YYYY-MM-DD, got {value!r}") from None


def resolve_dates(dt: Any, dt_end: Any, context: Context) -> list[str]:
    """The partitions a run writes: `dt` (..`dt_end`), else the run's `ds`, else the day before `run_after`.

    Scheduled and backfill runs have a logical date, so `ds` is the data date. A manual run triggered
    without one (Airflow 3's default) has `ds` None; it then processes yesterday (UTC) relative to when it
    was triggered, which is what the latest scheduled run would have processed.
    """
    if not _unset(dt):
        first = _date(dt, "dt")
    elif context.get("ds"):
        first = _date(context["ds"], "ds")
    else:
        run_after = context["dag_run"].run_after
        first = run_after.astimezone(_dt.UTC).date() - _dt.timedelta(days=1)
    last = first if _unset(dt_end) else _date(dt_end, "dt_end")
    if last < first:
        raise AirflowFailException(f"dt_end {last} is before dt {first}")
    n = (last - first).days + 1
    return [(first + _dt.timedelta(days=i)).isoformat() for i in range(n)]


def render_source_prefix(template: str, dt: str, context: Context) -> str:
    """Render a source-prefix template for one date with only what a prefix needs: `ds` (= `dt`),
    `ds_nodash`, `year`, `month`, `day` and `params` (the run's Param values).

    Done here rather than by Airflow's templating because the template usually comes from a Variable or
    a Param (rendered once by Airflow, still holding `{{ ds }}`) and because a range run renders it once
    per date. Deliberately no `var`, `conn` or `macros`: a Param is typed in by whoever triggers a run, and
    `{{ var.value.x }}` in it would print a Variable into the task log (and into every row's URI). A
    sandboxed, immutable Jinja environment; an unknown name fails the task (no retry) instead of giving a
    wrong prefix.
    """
    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    day = _dt.date.fromisoformat(dt)
    params = context.get("params") or {}
    names = {
        "ds": dt,
        "dt": dt,
        "ds_nodash": dt.replace("-", ""),
        "year": f"{day.year:04d}",
        "month": f"{day.month:02d}",
        "day": f"{day.day:02d}",
        "params": {key: params[key] for key in params},
    }
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    try:
        return env.from_string(template).render(**names)
    except TemplateError as exc:
        raise AirflowFailException(
            f"source prefix template: {exc}; it may use {', '.join(sorted(names))} (nothing else)"
        ) from None


def mask_url_password(url: str) -> None:
    """Register the password of a `scheme://user:password@host/` URL with Airflow's log masker."""
    from urllib.parse import urlsplit

    from airflow.sdk.log import mask_secret

    try:
        password = urlsplit(url).password
    except ValueError:
        return
    if password:
        mask_secret(password)


# --- operators --------------------------------------------------------------------------------------------


class ManifestOperator(BaseOperator):
    """Lists the source prefix of each date, freezes it into a manifest and returns one spec per shard.

    The return value feeds `.expand()`; the run-level plan (output root, staging prefixes, dates) is
    pushed under the XCom key `run` for the final task, which must run even when there are zero shards.
    Unset arguments fall back to the `wildocr_source_prefix` / `wildocr_output_root` Variables, then to
    the embedded default under WILDOCR_HOME (see docs/airflow.md).
    """

    template_fields: Sequence[str] = (
        "source_prefix",
        "output_root",
        "dt",
        "dt_end",
        "shard_size",
        "mode",
        "skip_done",
        "skip_seen_content",
    )
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        source_prefix: str | None = None,
        output_root: str | None = None,
        dt: str | None = None,
        dt_end: str | None = None,
        shard_size: int | str = settings.DEFAULT_SHARD_SIZE,
        mode: str = "staged",
        skip_done: bool | str = False,
        skip_seen_content: bool | str = False,
        conn_id: str | None = settings.CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_prefix = source_prefix
        self.output_root = output_root
        self.dt = dt
        self.dt_end = dt_end
        self.shard_size = shard_size
        self.mode = mode
        self.skip_done = skip_done
        self.skip_seen_content = skip_seen_content
        self.conn_id = conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from wildocr.pipeline import shard as pipeline
        from wildocr.storage.objectstore import redact

        run_id = context["run_id"]
        dates = resolve_dates(self.dt, self.dt_end, context)
        mode = self._mode()
        shard_size = self._shard_size()
        skip_done = str(self.skip_done).strip().lower() in ("true", "1", "yes")
        skip_seen = str(self.skip_seen_content).strip().lower() in ("true", "1", "yes")
        template = (
            self._first_set(self.source_prefix, Variable.get(settings.VAR_SOURCE_PREFIX, default=None))
            or settings.default_source_prefix()
        )
        output_root = (
            self._first_set(self.output_root, Variable.get(settings.VAR_OUTPUT_ROOT, default=None))
            or settings.default_output_root()
        ).rstrip("/")
        prefixes = {dt: render_source_prefix(template, dt, context) for dt in dates}
        for prefix in prefixes.values():
            mask_url_password(prefix)
        if len(set(prefixes.values())) != len(dates):
            raise AirflowFailException(
                f"{len(dates)} dates but the source prefix {template!r} does not depend on the date; "
                "template it (e.g. '.../{{ ds }}/') or run one dt at a time"
            )
        staging = {dt: pipeline.staging_root(output_root, dt, run_id) for dt in dates}
        options = storage_options_for([*prefixes.values(), output_root], self.conn_id)
        limit = conf.getint("core", "max_map_length", fallback=1024)

        def build(size: int) -> dict[str, list[int]]:
            out: dict[str, list[int]] = {}
            try:
                for dt, prefix in prefixes.items():
                    out[dt] = pipeline.build_manifest(
                        prefix,
                        pipeline.manifest_url(staging[dt]),
                        shard_size=size,
                        storage_options=options,
                        skip_done_root=output_root if skip_done else None,
                        dt=dt,
                        skip_seen_root=output_root if skip_seen else None,
                    )
                    self.log.info(
                        "dt=%s: %s -> %d shard(s) of <= %d images", dt, redact(prefix), len(out[dt]), size
                    )
            except Exception:
                # Give back the leases of the dates already planned: the retry plans them all again.
                for dt in out:
                    pipeline.remove_staging(staging[dt], storage_options=options)
                raise
            return out

        shards = build(shard_size)
        total = sum(map(len, shards.values()))
        if total > limit:
            # Mapping more than [core] max_map_length items fails the task; grow the shards instead of
            # failing the night. n_shards <= images/size + dates, and images <= total * old size.
            if limit <= len(dates):
                raise AirflowFailException(f"{len(dates)} dates cannot fit in max_map_length={limit}")
            grown = math.ceil(total * shard_size / (limit - len(dates)))
            self.log.warning(
                "%d shards exceed [core] max_map_length=%d; rebuilding with shard_size=%d instead of %d",
                total, limit, grown, shard_size,
            )  # fmt: skip
            shards = build(grown)
        specs = [
            ShardSpec(
                dt=dt,
                shard=n,
                mode=mode,
                source_prefix=prefixes[dt],
                manifest_url=pipeline.manifest_url(staging[dt]),
                staging_root=staging[dt],
                output_root=output_root,
                run_id=run_id,
            ).to_xcom()
            for dt, numbers in shards.items()
            for n in numbers
        ]
        self._source_prefixes = list(prefixes.values())  # for get_openlineage_facets_on_complete
        context["ti"].xcom_push(
            key="run",
            value={
                "run_id": run_id,
                "mode": mode,
                "output_root": output_root,
                "staging": staging,
                "shards": shards,
            },
        )
        return specs

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs: the source prefix of each date, one dataset each (docs/airflow.md, Lineage)."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        from wildocr.airflow import lineage

        return OperatorLineage(inputs=lineage.source_datasets(getattr(self, "_source_prefixes", [])))

    @staticmethod
    def _first_set(*values: Any) -> str | None:
        return next((str(v).strip() for v in values if not _unset(v)), None)

    def _mode(self) -> str:
        mode = "staged" if _unset(self.mode) else str(self.mode).strip()
        if mode not in settings.MODES:
            raise AirflowFailException(f"mode must be one of {settings.MODES}, got {mode!r}")
        return mode

    def _shard_size(self) -> int:
        try:
            size = int(str(self.shard_size).strip())
        except ValueError:
            size = 0
        if size < 1:
            raise AirflowFailException(f"shard_size must be a positive integer, got {self.shard_size!r}")
        return size


class _ShardOperator(BaseOperator):
    """Base of the per-shard steps: `shard` is a spec from ManifestOperator (a mapped argument)."""

    # `shard` is a template field so that a mapped task group's argument (or an XComArg) resolves.
    template_fields: Sequence[str] = ("shard", "engine_options")
    skip_when_fused = True

    def __init__(
        self,
        *,
        shard: Any,
        conn_id: str | None = settings.CONN_ID,
        engine_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("map_index_template", "{{ wildocr_shard }}")
        super().__init__(**kwargs)
        self.shard = shard
        self.conn_id = conn_id
        self.engine_options = engine_options

    def execute(self, context: Context) -> dict[str, Any] | str:
        spec = ShardSpec.from_xcom(self.shard)
        context["wildocr_shard"] = f"{spec.label} {spec.mode}"  # type: ignore[typeddict-unknown-key]
        if spec.mode == "fused" and self.skip_when_fused:
            raise AirflowSkipException("mode=fused: the detection task processed this shard end to end")
        options = storage_options_for([spec.source_prefix, spec.output_root], self.conn_id)
        result = self.run_shard(spec, options)
        self._spec, self._result = spec, result  # what get_openlineage_facets_on_complete reports
        return result

    def run_shard(self, spec: ShardSpec, options: dict[str, Any] | None) -> dict[str, Any] | str:
        raise NotImplementedError

    @property
    def engine(self) -> OCREngine:
        return get_engine(self.engine_options)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The task that wrote the shard's part files (a summary dict) reports prefix in, tables out.

        Staged detect/crop/recognize write only staging files, a skipped step nothing: no datasets.
        """
        from airflow.providers.openlineage.extractors import OperatorLineage

        from wildocr.airflow import lineage

        spec, result = getattr(self, "_spec", None), getattr(self, "_result", None)
        if spec is None or not isinstance(result, dict) or "images_url" not in result:
            return OperatorLineage()
        return OperatorLineage(
            inputs=[lineage.source_dataset(spec.source_prefix)],
            outputs=lineage.shard_outputs(spec.output_root, result),
        )


class TextDetectionOperator(_ShardOperator):
    """GPU step 1: text regions of every image in the shard (or, fused, the whole shard end to end)."""

    skip_when_fused = False
    ui_color = "#fde7c8"

    def __init__(self, *, queue: str = settings.GPU_QUEUE, pool: str = settings.GPU_POOL, **kwargs: Any):
        super().__init__(queue=queue, pool=pool, **kwargs)

    def run_shard(self, spec: ShardSpec, options: dict[str, Any] | None) -> dict[str, Any] | str:
        from wildocr.pipeline import shard as pipeline

        if spec.mode == "fused":
            return pipeline.process_shard(
                spec.manifest_url,
                spec.shard,
                output_root=spec.output_root,
                dt=spec.dt,
                run_id=spec.run_id,
                engine=self.engine.load(),
                storage_options=options,
            )
        return pipeline.detect_shard(
            spec.manifest_url,
            spec.shard,
            staging_root=spec.staging_root,
            engine=self.engine.load("detect"),
            storage_options=options,
        )


class CropOperator(_ShardOperator):
    """CPU step 2: padded perspective crops of the detected regions (default queue, no GPU needed)."""

    ui_color = "#e6f4ea"

    def run_shard(self, spec: ShardSpec, options: dict[str, Any] | None) -> str:
        from wildocr.pipeline import shard as pipeline

        return pipeline.crop_shard(
            spec.manifest_url,
            spec.shard,
            staging_root=spec.staging_root,
            engine=self.engine,  # crops need no model: none is loaded
            storage_options=options,
        )


class CtcRecognitionOperator(_ShardOperator):
    """GPU step 3: batched CTC recognition of the shard's crops."""

    ui_color = "#fde7c8"

    def __init__(self, *, queue: str = settings.GPU_QUEUE, pool: str = settings.GPU_POOL, **kwargs: Any):
        super().__init__(queue=queue, pool=pool, **kwargs)

    def run_shard(self, spec: ShardSpec, options: dict[str, Any] | None) -> str:
        from wildocr.pipeline import shard as pipeline

        return pipeline.recognize_shard(
            spec.shard,
            staging_root=spec.staging_root,
            engine=self.engine.load("recognize"),
            storage_options=options,
        )


class PublishOperator(_ShardOperator):
    """Step 4: the shard's rows into `images/` and `words/` part files of its dt partition (replacing).

    Its "OCR results" extra link opens the partition, filtered to this shard, in the results browser.
    """

    ui_color = "#e8eaf6"
    operator_extra_links = (PartitionBrowserLink(),)

    def run_shard(self, spec: ShardSpec, options: dict[str, Any] | None) -> dict[str, Any]:
        from wildocr.pipeline import shard as pipeline

        return pipeline.publish_shard(
            spec.manifest_url,
            spec.shard,
            staging_root=spec.staging_root,
            output_root=spec.output_root,
            dt=spec.dt,
            run_id=spec.run_id,
            storage_options=options,
        )


class FinalizeOperator(BaseOperator):
    """Last step: removes the run's staging prefixes and announces the tables as partitioned Asset events.

    One task, not one per shard, so an asset-scheduled consumer sees the events of a run only after every
    shard succeeded (trigger rule `none_failed`: skipped shard steps in fused mode are fine). Each table
    gets one event per `dt` partition the run wrote (partition key = the dt, Airflow >= 3.2 partitioned
    asset events); a consumer scheduled with `PartitionedAssetTimetable` gets one run per partition.
    The extra (shared by the run's events; `by_dt` has the figures of each partition):
    {"output_root", "dts", "run_id", "mode", "table", "partitions", "images", "ok", "errors", "words",
     "models": {det_sha256, ...}, "by_dt": {dt: {"images", "ok", "errors", "words", "partition"}}}
    """

    template_fields: Sequence[str] = ("run",)
    ui_color = "#e8eaf6"

    # The shard tasks whose return value is a shard summary: publish (staged) or detect (fused).
    SUMMARY_TASKS = ("ocr.detect", "ocr.publish")

    def __init__(self, *, run: Any, conn_id: str | None = settings.CONN_ID, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [IMAGES_ASSET, WORDS_ASSET])
        super().__init__(**kwargs)
        self.run = run
        self.conn_id = conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from wildocr.pipeline import shard as pipeline
        from wildocr.storage.tables import partition_url

        run = self.run
        output_root = run["output_root"]
        options = storage_options_for([output_root], self.conn_id)
        for dt, staging in sorted(run["staging"].items()):
            if not run["shards"][dt]:
                # No shard task wrote (and pruned) this partition; the rerun rule still holds: the
                # partition mirrors the listing, so files of an earlier run of this dt go.
                removed = pipeline.remove_stale_parts(output_root, dt, 0, storage_options=options)
                self.log.warning("dt=%s: no images in the source; %d old part file(s) removed", dt, removed)
            pipeline.finalize_partition(output_root, dt, staging_root=staging, storage_options=options)
            pipeline.remove_staging(staging, storage_options=options)
            self.log.info("dt=%s: %d shard(s) published; removed %s", dt, len(run["shards"][dt]), staging)
        dts = sorted(run["staging"])
        figures = run_figures(context["ti"].xcom_pull(task_ids=list(self.SUMMARY_TASKS)), dts)
        summary = {"output_root": output_root, "dts": dts, "run_id": run["run_id"], "mode": run["mode"]}
        for outlet in self.outlets:
            if isinstance(outlet, Asset) and outlet.uri in (
                settings.IMAGES_ASSET_URI,
                settings.WORDS_ASSET_URI,
            ):
                table = outlet.uri.rsplit("/", 1)[-1]
                event = context["outlet_events"][outlet]
                event.extra = {
                    **summary,
                    **figures,
                    "table": table,
                    "partitions": [partition_url(output_root, table, dt) for dt in dts],
                    "by_dt": {
                        dt: {**counts, "partition": partition_url(output_root, table, dt)}
                        for dt, counts in figures["by_dt"].items()
                    },
                }
                event.add_partitions(dts)
        return {**summary, **{k: figures[k] for k in ("images", "ok", "errors", "words")}}


_COUNTS = ("images", "ok", "errors", "words")


def run_figures(shard_summaries: Any, dts: Sequence[str]) -> dict[str, Any]:
    """Totals, per-dt counts and model hashes of a run from its shard summaries (XCom values).

    Anything that is not a shard summary (a staged detect step returns a file URL, a skipped step
    nothing) is ignored. Every dt of the run is present, with zeros when it had no images.
    """
    by_dt: dict[str, dict[str, int]] = {dt: dict.fromkeys(_COUNTS, 0) for dt in dts}
    models: dict[str, str] = {}
    for summary in shard_summaries or []:
        if not isinstance(summary, Mapping) or "images_url" not in summary:
            continue
        counts = by_dt.setdefault(summary["dt"], dict.fromkeys(_COUNTS, 0))
        for key in _COUNTS:
            counts[key] += int(summary[key])
        for key, value in (summary.get("models") or {}).items():
            if value:
                models.setdefault(key, value)
    totals = {key: sum(c[key] for c in by_dt.values()) for key in _COUNTS}
    return {**totals, "models": models, "by_dt": by_dt}


def triggering_partition(context: Context, asset: Asset = WORDS_ASSET) -> tuple[str | None, dict[str, Any]]:
    """The partition key (dt) of an asset-triggered run and the extra of the event that carried it.

    A run created by `PartitionedAssetTimetable` has `context["partition_key"]`; its consumed events
    carry the same key. A manual run has neither: (None, {}).
    """
    key = context.get("partition_key")
    events = list(context.get("triggering_asset_events", {}).get(asset, []) or [])
    matching = [e for e in events if getattr(e, "partition_key", None) == key] if key else []
    extra = dict((matching or events)[-1].extra or {}) if (matching or events) else {}
    return key, extra
