"""Airflow operators over the pipeline layer: each parses its arguments, calls one pipeline function and
returns what it gives (a typed value, converted once for XCom).

Every operator is idempotent (outputs are pure functions of run, dt and shard), so Airflow retries and
`airflow tasks clear` are safe. Heavy modules (pyarrow, ONNX Runtime, OpenCV) are imported inside
`execute`, never at DAG-parse time.

Modes (the run's `mode`, from the DAG's `mode` Param):
- `staged`: detect -> crop -> recognize -> publish, one task each, intermediate Parquet under the run's
  staging prefix. A failed step retries alone, GPU steps run on GPU workers and cropping does not.
- `fused`: the detection task reads the whole shard end to end and the other steps skip. Same task graph
  in both modes, so the UI, the pools and the tests see one DAG; the choice is made per run without a
  branch operator or a second copy of the tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator, Variable, conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from wildocr.airflow import params, settings
from wildocr.airflow.assets import IMAGES_ASSET, WORDS_ASSET
from wildocr.airflow.browser.links import PartitionBrowserLink
from wildocr.airflow.hooks import storage_options_for

if TYPE_CHECKING:
    from airflow.sdk import Context

    from wildocr.engine import OCREngine
    from wildocr.pipeline.run import ShardSpec


class ManifestOperator(BaseOperator):
    """Plans the run: lists the source prefix of each date into a manifest and returns one spec per shard.

    The return value feeds `.expand()`; the run plan (`pipeline.run.RunPlan`) is pushed under the XCom key
    `run` for the finalize task, which must run even when there are zero shards.

    :param source_prefix: photos to read, a template of the date (`{{ ds }}`); unset: the
        `wildocr_source_prefix` Variable, else the embedded default. (templated)
    :param output_root: table root; unset: the `wildocr_output_root` Variable, else the embedded default.
        (templated)
    :param dt: first data date (YYYY-MM-DD); unset: the run's `ds`, else yesterday (UTC). (templated)
    :param dt_end: last data date of a range run; unset: `dt`. (templated)
    :param shard_size: images per shard task; grown when the run would map more than
        `[core] max_map_length` tasks. (templated)
    :param mode: `staged` (four tasks per shard) or `fused` (one). (templated)
    :param skip_done: skip images already read `ok` in other partitions. (templated)
    :param skip_seen_content: skip OCR of photos whose bytes were read on an earlier date. (templated)
    :param engine_options: flat engine options (`{"verify_words": false}`), checked here so that a bad
        key fails the run before any image is read. (templated)
    :param model_dir: a model folder; unset: the `wildocr_model_dir` Variable, else the stock weights.
        Checked here and recorded in every shard spec, so all shard tasks of a run load the same weights.
        (templated)
    :param conn_id: the `aws` connection for S3 URLs (None: s3fs's own credential chain).
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
        "engine_options",
        "model_dir",
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
        engine_options: Mapping[str, Any] | str | None = None,
        model_dir: str | None = None,
        conn_id: str | None = settings.CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_dir = model_dir
        self.source_prefix = source_prefix
        self.output_root = output_root
        self.dt = dt
        self.dt_end = dt_end
        self.shard_size = shard_size
        self.mode = mode
        self.skip_done = skip_done
        self.skip_seen_content = skip_seen_content
        self.engine_options = engine_options
        self.conn_id = conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from wildocr.pipeline import run

        dates = params.resolve_dates(self.dt, self.dt_end, context)
        params.engine_options(self.engine_options)  # fail now, not in every shard task
        model_dir = params.model_dir(
            settings.model_dir(self.model_dir, Variable.get(settings.VAR_MODEL_DIR, default=None))
        )
        template = settings.source_prefix(
            self.source_prefix, Variable.get(settings.VAR_SOURCE_PREFIX, default=None)
        )
        output_root = settings.output_root(
            self.output_root, Variable.get(settings.VAR_OUTPUT_ROOT, default=None)
        )
        prefixes = {dt: params.render_source_prefix(template, dt, context) for dt in dates}
        for prefix in prefixes.values():
            params.mask_url_password(prefix)
        try:
            plan = run.plan_run(
                prefixes,
                output_root,
                context["run_id"],
                mode=params.as_choice(self.mode, settings.MODES, "staged", "mode"),
                shard_size=params.as_positive_int(self.shard_size, "shard_size"),
                max_shards=conf.getint("core", "max_map_length", fallback=1024),
                skip_done=params.as_bool(self.skip_done),
                skip_seen_content=params.as_bool(self.skip_seen_content),
                storage_options=storage_options_for([*prefixes.values(), output_root], self.conn_id),
                model_dir=model_dir,
            )
        except ValueError as exc:  # a plan no retry can fix (one prefix for several dates, too many dates)
            raise AirflowFailException(str(exc)) from None
        self._source_prefixes = list(prefixes.values())  # for get_openlineage_facets_on_complete
        context["ti"].xcom_push(key=settings.RUN_XCOM_KEY, value=plan.to_xcom())
        return [spec.to_xcom() for spec in plan.specs()]

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs: the source prefix of each date, one dataset each (docs/airflow.md, Lineage)."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        from wildocr.airflow import lineage

        return OperatorLineage(inputs=lineage.source_datasets(getattr(self, "_source_prefixes", [])))


class _ShardOperator(BaseOperator):
    """Base of the per-shard steps.

    :param shard: a shard spec from ManifestOperator (a mapped argument). (templated)
    :param engine_options: flat engine options, as given to ManifestOperator. (templated)
    :param conn_id: the `aws` connection for S3 URLs (None: s3fs's own credential chain).
    """

    # `shard` is a template field so that a mapped task group's argument (or an XComArg) resolves.
    template_fields: Sequence[str] = ("shard", "engine_options")
    skip_when_fused = True

    def __init__(
        self,
        *,
        shard: Any,
        conn_id: str | None = settings.CONN_ID,
        engine_options: Mapping[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("map_index_template", "{{ wildocr_shard }}")
        super().__init__(**kwargs)
        self.shard = shard
        self.conn_id = conn_id
        self.engine_options = engine_options

    def execute(self, context: Context) -> dict[str, Any] | str:
        from wildocr.pipeline.outputs import ShardSummary
        from wildocr.pipeline.run import ShardSpec

        try:
            spec = ShardSpec.from_xcom(self.shard)
        except (ValueError, KeyError, TypeError) as exc:
            raise AirflowFailException(f"not a shard spec from the manifest task: {exc}") from None
        context["wildocr_shard"] = f"{spec.label} {spec.mode}"  # type: ignore[typeddict-unknown-key]
        if spec.mode == "fused" and self.skip_when_fused:
            raise AirflowSkipException("mode=fused: the detection task processed this shard end to end")
        options = storage_options_for([spec.source_prefix, spec.output_root], self.conn_id)
        result = self.run_shard(spec, options)
        self._spec, self._result = spec, result  # what get_openlineage_facets_on_complete reports
        return result.to_xcom() if isinstance(result, ShardSummary) else result

    def run_shard(self, spec: ShardSpec, options: dict[str, Any] | None) -> Any:
        raise NotImplementedError

    def engine(self, spec: ShardSpec) -> OCREngine:
        """The process's engine for these options and the run's model folder (from the manifest task, so
        every shard of a run reads with the same weights); each pipeline step loads the models it runs."""
        from wildocr.pipeline.options import shared_engine

        return shared_engine(params.engine_options(self.engine_options), model_dir=spec.model_dir)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The task that wrote the shard's part files reports prefix in, tables out; others nothing."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        from wildocr.airflow import lineage
        from wildocr.pipeline.outputs import ShardSummary

        spec, result = getattr(self, "_spec", None), getattr(self, "_result", None)
        if spec is None or not isinstance(result, ShardSummary):
            return OperatorLineage()
        return OperatorLineage(
            inputs=[lineage.source_dataset(spec.source_prefix)],
            outputs=lineage.shard_outputs(spec.output_root, result),
        )


class TextDetectionOperator(_ShardOperator):
    """GPU step 1: text boxes of every image in the shard (fused: the whole shard end to end)."""

    skip_when_fused = False
    ui_color = "#fde7c8"

    def __init__(self, *, queue: str = settings.GPU_QUEUE, pool: str = settings.GPU_POOL, **kwargs: Any):
        super().__init__(queue=queue, pool=pool, **kwargs)

    def run_shard(self, spec: ShardSpec, options: dict[str, Any] | None) -> Any:
        from wildocr.pipeline import fused, staged

        if spec.mode == "fused":
            return fused.process_shard(
                spec.manifest_url,
                spec.shard,
                output_root=spec.output_root,
                dt=spec.dt,
                run_id=spec.run_id,
                engine=self.engine(spec),
                storage_options=options,
            )
        return staged.detect_shard(
            spec.manifest_url,
            spec.shard,
            staging_root=spec.staging_root,
            engine=self.engine(spec),
            storage_options=options,
        )


class CropOperator(_ShardOperator):
    """CPU step 2: padded perspective crops of the detected boxes (default queue, no model loaded)."""

    ui_color = "#e6f4ea"

    def run_shard(self, spec: ShardSpec, options: dict[str, Any] | None) -> str:
        from wildocr.pipeline import staged

        return staged.crop_shard(
            spec.manifest_url,
            spec.shard,
            staging_root=spec.staging_root,
            engine=self.engine(spec),
            storage_options=options,
        )


class CtcRecognitionOperator(_ShardOperator):
    """GPU step 3: batched CTC recognition of the shard's crops."""

    ui_color = "#fde7c8"

    def __init__(self, *, queue: str = settings.GPU_QUEUE, pool: str = settings.GPU_POOL, **kwargs: Any):
        super().__init__(queue=queue, pool=pool, **kwargs)

    def run_shard(self, spec: ShardSpec, options: dict[str, Any] | None) -> str:
        from wildocr.pipeline import staged

        return staged.recognize_shard(
            spec.manifest_url,
            spec.shard,
            staging_root=spec.staging_root,
            engine=self.engine(spec),
            storage_options=options,
        )


class PublishOperator(_ShardOperator):
    """Step 4 (CPU, no model loaded): the shard's words, written into `images/` and `words/` part files of
    its dt partition. Its "OCR results" extra link opens the partition, filtered to this shard."""

    ui_color = "#e8eaf6"
    operator_extra_links = (PartitionBrowserLink(),)

    def run_shard(self, spec: ShardSpec, options: dict[str, Any] | None) -> Any:
        from wildocr.pipeline import staged

        return staged.publish_shard(
            spec.manifest_url,
            spec.shard,
            staging_root=spec.staging_root,
            output_root=spec.output_root,
            dt=spec.dt,
            run_id=spec.run_id,
            engine=self.engine(spec),
            storage_options=options,
        )


class FinalizeOperator(BaseOperator):
    """Last step: ends each partition of the run and announces the tables as partitioned Asset events.

    One task, not one per shard, so an asset-scheduled consumer sees the events of a run only after every
    shard succeeded (trigger rule `none_failed`: skipped shard steps in fused mode are fine). Each table
    gets one event per `dt` partition the run wrote (partition key = the dt); a consumer scheduled with
    `PartitionedAssetTimetable` gets one run per partition. The extra (shared by the run's events; `by_dt`
    has the figures of each partition):
    {"output_root", "dts", "run_id", "mode", "table", "partitions", "images", "objects", "ok", "errors",
     "words", "models": {det_sha256, ...}, "by_dt": {dt: {"images", "objects", "ok", "errors", "words",
     "partition"}}} (`images`: rows, one per page; `objects`: the photos and documents they come from)

    :param run: the run plan the manifest task pushed (an XComArg). (templated)
    :param conn_id: the `aws` connection for S3 URLs (None: s3fs's own credential chain).
    """

    template_fields: Sequence[str] = ("run",)
    ui_color = "#e8eaf6"

    def __init__(self, *, run: Any, conn_id: str | None = settings.CONN_ID, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [IMAGES_ASSET, WORDS_ASSET])
        super().__init__(**kwargs)
        self.run = run
        self.conn_id = conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from wildocr.pipeline import run
        from wildocr.pipeline.outputs import ShardSummary, run_figures
        from wildocr.storage.tables import partition_url

        plan = run.RunPlan.from_xcom(self.run)
        options = storage_options_for([plan.output_root], self.conn_id)
        for dt in plan.dts:
            run.finish_partition(plan, dt, options)
            self.log.info(
                "dt=%s: %d shard(s) published; removed %s", dt, len(plan.shards[dt]), plan.staging[dt]
            )
        pulled = context["ti"].xcom_pull(task_ids=list(settings.SUMMARY_TASKS)) or []
        summaries = [s for s in map(ShardSummary.from_xcom, pulled) if s is not None]
        figures = run_figures(summaries, plan.dts)
        summary: dict[str, Any] = {
            "output_root": plan.output_root,
            "dts": plan.dts,
            "run_id": plan.run_id,
            "mode": plan.mode,
        }
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
                    "partitions": [partition_url(plan.output_root, table, dt) for dt in plan.dts],
                    "by_dt": {
                        dt: {**counts, "partition": partition_url(plan.output_root, table, dt)}
                        for dt, counts in figures["by_dt"].items()
                    },
                }
                event.add_partitions(plan.dts)
        return {**summary, **{k: figures[k] for k in ("images", "objects", "ok", "errors", "words")}}
