"""New run screen: choose data, recipe, epsilon, delta and preset, and see what the choice implies.

The preview uses the core's planner (``prepare_run``), the same code the engine runs, so the noise
multipliers and steps shown are the ones the run will use. Planning imports opacus and torch, so it
runs in a worker thread, debounced while the user types.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from dpsad_core.commands.plan_time import format_duration
from dpsad_core.privacy.plain_words import likelihood_factor
from dpsad_core.training.config import DEFAULT_RECIPE, Recipe  # no torch: the window still opens fast
from dpsad_workbench.core import format_epsilon
from dpsad_workbench.settings import AppSettings
from dpsad_workbench.widgets import EPSILON_MAX, EPSILON_MIN, EpsilonEdit, WrapLabel, compact_combo, parse_epsilon
from dpsad_workbench.worker import TIMING_LANE, WorkerOwner, call_in_worker

# The default first, then the others in the enum's order; the texts are the core's (one place for both).
RECIPES = {recipe.value: recipe.description
           for recipe in sorted(Recipe, key=lambda r: r is not DEFAULT_RECIPE)}
PUBLIC_RECIPES = tuple(recipe.value for recipe in Recipe if recipe.public_data_use is not None)
#: Neutral labels: what a preset costs depends on the data's size and the machine, so a time is added to a
#: name only once the estimator has timed that preset on this data (``preset_label``).
PRESETS = {"tiny": "tiny (to try the app)", "quick": "quick (a small model)",
           "standard": "standard (a larger model, for a GPU)"}
DEMO_LABEL = "demo: embedded 8x8 digits (1,500 images)"
DEMO_META = {"name": "demo", "num_classes": 10}
NO_PUBLIC_LABEL = "None: no public data"
RENDERED_DIGITS_CLASSES = 10
RENDERED_DIGITS_LABEL = "rendered-digits: generated font digits (public, 10 classes)"


class NewRunScreen(WorkerOwner, QWidget):
    """Emits ``start_requested(TrainConfig)``; ``plan_ready(dict)`` after each preview."""

    start_requested = Signal(object)
    plan_ready = Signal(dict)
    plan_failed = Signal(object)
    estimate_ready = Signal(dict)

    def __init__(self, settings: Callable[[], AppSettings], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._generation = 0
        self._stopped = False
        self._workers: set = set()
        self.preview: dict[str, Any] | None = None
        self._metas: dict[str, dict[str, Any]] = {}
        self._public_choice = ""  # the public data the analyst chose ("": none)
        self._preset_seconds: dict[tuple, float] = {}  # (what the time depends on, preset) -> estimated seconds
        self._preview_key: tuple | None = None  # that key for the preview being computed
        self._shares: dict[str, set[str]] = {}  # data spec -> fingerprints of datasets sharing records with it
        self._build()
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(400)
        self._debounce.timeout.connect(self.update_preview)
        for signal in (self.data.currentTextChanged, self.recipe.currentIndexChanged, self.epsilon.textChanged,
                       self.delta.textChanged, self.preset.currentIndexChanged, self.max_steps.valueChanged,
                       self.public_data.currentTextChanged, self.resolution.valueChanged,
                       self.min_records.valueChanged):
            signal.connect(self._schedule_preview)
        self.data.currentTextChanged.connect(self._offer_public)
        self.public_data.currentIndexChanged.connect(self._public_chosen)
        self._recipe_changed()
        self._offer_public()
        self._explain_epsilon()

    def _build(self) -> None:
        outer = QHBoxLayout(self)
        form_box = QGroupBox("Settings")
        form = QFormLayout(form_box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.data = QComboBox()
        self.data.setEditable(True)
        self.data.setToolTip("A dataset from the Datasets screen, 'demo', or a path")
        form.addRow("&Data:", self.data)
        self.recipe = QComboBox()
        for name in RECIPES:
            self.recipe.addItem(name, name)
        self.recipe.currentIndexChanged.connect(self._recipe_changed)
        form.addRow("&Recipe:", self.recipe)
        self.recipe_help = WrapLabel()
        form.addRow("", self.recipe_help)
        self.public_data = QComboBox()
        self.public_data.setEditable(True)
        self.public_label = QLabel("P&ublic data:")
        self.public_label.setBuddy(self.public_data)
        form.addRow(self.public_label, self.public_data)
        self.epsilon = EpsilonEdit(10.0)
        self.epsilon.setToolTip(f"Target epsilon for the whole run, {EPSILON_MIN:g} to {EPSILON_MAX:g}: smaller is "
                                "more private and noisier")
        form.addRow("Target &epsilon:", self.epsilon)
        self.epsilon_problem = WrapLabel("")  # inline: a value outside the range is kept as typed, never reset
        self.epsilon_problem.setObjectName("epsilonProblem")
        self.epsilon_problem.setStyleSheet("QLabel#epsilonProblem { color: #b00020; }")
        self.epsilon_problem.hide()
        form.addRow("", self.epsilon_problem)
        self.guarantee = WrapLabel("")  # what the chosen epsilon means, in one sentence
        self.guarantee_button = QPushButton("What this &guarantee means...")
        self.guarantee_button.setToolTip("The full plain-language text the export's privacy report carries")
        self.guarantee_button.clicked.connect(self.show_guarantee)
        self.guarantee_box: QMessageBox | None = None
        form.addRow("", self.guarantee)
        form.addRow("", self.guarantee_button)
        self.epsilon.textChanged.connect(self._epsilon_edited)
        self.delta = QLineEdit()
        self.delta.setPlaceholderText("automatic: well below one in the number of people or images")
        form.addRow("&Delta:", self.delta)
        self.preset = QComboBox()
        for name, label in PRESETS.items():
            self.preset.addItem(label, name)
        self.preset.setCurrentIndex(1)
        form.addRow("&Preset:", self.preset)
        self.max_steps = QSpinBox()
        self.max_steps.setRange(0, 1_000_000)
        self.max_steps.setSpecialValueText("all planned steps")
        self.max_steps.setToolTip("Stop each phase after this many steps; epsilon reports what was spent")
        form.addRow("&Max steps per phase:", self.max_steps)
        self.resolution = QSpinBox()
        self.resolution.setRange(0, 256)
        self.resolution.setSpecialValueText("as imported")
        form.addRow("Image &size:", self.resolution)
        self.min_records = QSpinBox()
        self.min_records.setRange(1, 10_000_000)
        self.min_records.setValue(100)
        form.addRow("Fewest privacy &units:", self.min_records)
        buttons = QHBoxLayout()
        self.preview_button = QPushButton("Pre&view plan")
        self.preview_button.clicked.connect(self.update_preview)
        self.start_button = QPushButton("&Start training")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self._start)
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.start_button)
        form.addRow(buttons)
        for combo in (self.data, self.recipe, self.public_data, self.preset):
            compact_combo(combo)  # long dataset names must not widen the form past a small window
        self.start_reason = WrapLabel("")  # why Start is disabled (the plan says the run cannot run)
        self.start_reason.setObjectName("startReason")
        self.start_reason.setStyleSheet("QLabel#startReason { color: #b00020; }")
        self.start_reason.hide()
        form.addRow(self.start_reason)
        outer.addWidget(form_box, 2)

        preview_box = QGroupBox("What this choice implies")
        preview_layout = QVBoxLayout(preview_box)
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setObjectName("warnings")
        self.warnings.setStyleSheet("QLabel#warnings { background: #fff4e5; border: 1px solid #e0a040;"
                                    " border-radius: 4px; padding: 6px; color: #5a3a00; }")
        self.warnings.hide()
        self.plan_text = QLabel("Choose the data to see the plan.")
        self.plan_text.setWordWrap(True)
        self.plan_text.setTextFormat(Qt.TextFormat.RichText)
        self.plan_text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.plan_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        inner = QWidget()
        inner_layout = QVBoxLayout(inner)
        inner_layout.addWidget(self.warnings)
        inner_layout.addWidget(self.plan_text)
        self.details_button = QPushButton("&Details (exact values)")
        self.details_button.setCheckable(True)
        self.details_button.setEnabled(False)
        self.details_text = QLabel("")
        self.details_text.setWordWrap(True)
        self.details_text.setTextFormat(Qt.TextFormat.RichText)
        self.details_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_text.hide()
        self.details_button.toggled.connect(self.details_text.setVisible)
        inner_layout.addWidget(self.details_button, 0, Qt.AlignmentFlag.AlignLeft)
        inner_layout.addWidget(self.details_text)
        inner_layout.addStretch(1)
        scroll.setWidget(inner)
        preview_layout.addWidget(scroll)
        outer.addWidget(preview_box, 3)

    # -- data choices ------------------------------------------------------------------------------
    def set_datasets(self, datasets: list) -> None:
        """Offer the saved datasets (names or their ``dataset.json`` dicts) plus the demo data, keeping the choice."""
        metas = [meta if isinstance(meta, dict) else {"name": meta} for meta in datasets]
        self._metas = {str(meta["name"]): meta for meta in metas}
        current = self.data_spec()
        self.data.blockSignals(True)
        self.data.clear()
        for name, meta in self._metas.items():
            if not meta.get("builtin"):  # the demo has its own entry, below
                self.data.addItem(name, name)
        self.data.addItem(DEMO_LABEL, "demo")
        if current:
            self.select_data(current)
        self.data.blockSignals(False)
        self._offer_public()
        self._schedule_preview()

    def _offer_public(self, *args) -> None:  # signals pass the new text
        """Public data: none by default; only sets with the private data's classes, never the private data itself.

        A dataset with the private one's fingerprint is the same images under another name, so it is
        left out too, and so is one that shares records with it (a subset, a re-import at another size:
        the ledger's overlaps, known once a plan was previewed; the planner refuses them anyway). The
        analyst's last choice is kept while it is still offered (a recipe or data change that hides it
        and back restores it).
        """
        spec = self.data_spec()
        private = DEMO_META if spec == "demo" else self._metas.get(spec, {})
        classes, fingerprint = private.get("num_classes"), private.get("fingerprint")
        self.public_data.blockSignals(True)
        self.public_data.clear()
        self.public_data.addItem(NO_PUBLIC_LABEL, "")
        if classes in (None, RENDERED_DIGITS_CLASSES):
            self.public_data.addItem(RENDERED_DIGITS_LABEL, "rendered-digits")
        for name, meta in self._metas.items():
            if meta.get("builtin") or name == spec or (fingerprint and meta.get("fingerprint") == fingerprint):
                continue
            if meta.get("fingerprint") in self._shares.get(spec, ()):
                continue
            if classes is not None and meta.get("num_classes", classes) != classes:
                continue
            self.public_data.addItem(f"{name} ({meta['num_classes']} classes)" if "num_classes" in meta else name,
                                     name)
        index = self.public_data.findData(self._public_choice) if self._public_choice else 0
        self.public_data.setCurrentIndex(max(index, 0))
        show_start(self.public_data)
        self.public_data.blockSignals(False)

    def _public_chosen(self, index: int) -> None:
        if index >= 0:
            self._public_choice = str(self.public_data.itemData(index) or "")
            show_start(self.public_data)

    def select_data(self, spec: str) -> None:
        index = self.data.findData(spec)
        if index < 0:
            index = self.data.findText(spec)
        if index >= 0:
            self.data.setCurrentIndex(index)
        else:
            self.data.setEditText(spec)

    def data_spec(self) -> str:
        text = self.data.currentText().strip()
        index = self.data.findText(text)
        if index >= 0 and self.data.itemData(index):
            return str(self.data.itemData(index))
        return text

    def public_spec(self) -> str | None:
        """The public data of the form: None when the recipe uses none or "None" is chosen."""
        if self.recipe.currentData() not in PUBLIC_RECIPES:
            return None
        text = self.public_data.currentText().strip()
        index = self.public_data.findText(text)
        if index >= 0:
            return str(self.public_data.itemData(index) or "") or None
        return text or None  # a path typed in

    def _epsilon_edited(self, text: str) -> None:  # unused: the edit widget holds the text
        problem = self.epsilon.problem()
        self.epsilon_problem.setText(problem or "")
        self.epsilon_problem.setVisible(problem is not None)
        self._explain_epsilon()

    def _unit(self) -> str:
        """The unit of privacy of the chosen data, once a plan has said it (images until then)."""
        return (self.preview or {}).get("dataset", {}).get("unit", "image")

    def _explain_epsilon(self) -> None:
        if self.epsilon.problem() is not None:
            self.guarantee.setText("")
            return
        epsilon = self.epsilon.value()
        who = "one patient's images" if self._unit() == "patient" else "one image"
        self.guarantee.setText(f"Epsilon {epsilon:g}: whether or not {who} is in your data, any result of training "
                               f"is at most {likelihood_factor(epsilon)} times more or less likely. Smaller is more "
                               "private, and the images get noisier.")

    def guarantee_text(self) -> str:
        """The report's full plain-language text for the epsilon, delta and unit on the form."""
        from dpsad_core.export.report import plain_language
        from dpsad_core.runs.records import RunResult

        epsilon, problem = parse_epsilon(self.epsilon.text())
        if problem is not None:
            return problem
        plan = (self.preview or {}).get("plan", {})
        delta = plan.get("delta") or 1e-5
        text = plain_language(RunResult(run_id="", recipe=self.recipe.currentData(), private=True, epsilon=epsilon,
                                        delta=delta, unit_of_privacy=self._unit()))
        return ("What this guarantee means:\n" + "\n".join(f"- {line}" for line in text["means"])
                + "\n\nWhat it does not mean:\n" + "\n".join(f"- {line}" for line in text["does_not_mean"]))

    def show_guarantee(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "What this guarantee means", self.guarantee_text(),
                          QMessageBox.StandardButton.Close, self)
        box.setObjectName("guaranteeDialog")
        box.open()
        self.guarantee_box = box

    def _recipe_changed(self) -> None:
        recipe = self.recipe.currentData()
        self.recipe_help.setText(RECIPES[recipe])
        uses_public = recipe in PUBLIC_RECIPES
        self.public_data.setVisible(uses_public)
        self.public_label.setVisible(uses_public)
        if recipe == "dpdm":
            self.public_label.setText("P&ublic data:\n(optional)")
        else:
            self.public_label.setText("P&ublic data:")

    # -- config and preview ------------------------------------------------------------------------
    def build_config(self):
        """The :class:`TrainConfig` the form describes (raises ConfigError on a bad value)."""
        from dpsad_core.errors import ConfigError
        from dpsad_core.training import TrainConfig, resolve_hyperparameters

        spec = self.data_spec()
        if not spec:
            raise ConfigError("no data chosen", field="data", remedy="import a dataset or choose 'demo'")
        delta_text = self.delta.text().strip()
        delta = None
        if delta_text:
            try:
                delta = float(delta_text)
            except ValueError:
                raise ConfigError(f"delta {delta_text!r} is not a number", field="delta", value=delta_text,
                                  remedy="type a number such as 1e-6, or leave it empty for the default") from None
        preset = self.preset.currentData()
        settings = self._settings()
        recipe = self.recipe.currentData()
        public = self.public_spec()
        return TrainConfig(data=spec, recipe=recipe, epsilon=self.epsilon.value(), delta=delta,
                           preset=preset, hyper=resolve_hyperparameters(preset), public_data=public,
                           max_steps=self.max_steps.value() or None, resolution=self.resolution.value() or None,
                           device=settings.device, min_records=self.min_records.value())

    def _schedule_preview(self, *args) -> None:  # signals pass values we do not need
        if not self._stopped:
            self._debounce.start()

    def stop_previews(self) -> None:
        self._stopped = True
        self._debounce.stop()

    def update_preview(self):
        """Compute the plan in a worker; returns the worker (tests wait on ``plan_ready``)."""
        self._debounce.stop()
        self._generation += 1
        generation = self._generation
        try:
            config = self.build_config()
        except Exception as error:  # noqa: BLE001 - shown in the preview, not as a dialog while typing
            self._show_problem(error)
            self.plan_failed.emit(error)
            self._preview_key = None
            self._label_presets(None)
            return None
        self._preview_key = (cost_key(config), config.preset)
        self._label_presets(self._preview_key[0])
        workspace = self._settings().workspace_path()
        self.plan_text.setText("Computing the plan (calibrating the noise)...")
        worker = call_in_worker("dpsad_workbench.core:plan_preview", config, workspace=workspace,
                                all_gpus=self._settings().all_gpus, parent=self)
        # Queued explicitly: a lambda has no thread of its own, and these signals come from the worker.
        queued = Qt.ConnectionType.QueuedConnection
        worker.yielded.connect(lambda result: self._on_plan(generation, result), queued)
        worker.errored.connect(lambda error: self._on_plan_error(generation, error), queued)
        self._keep(worker)
        worker.start()
        return worker

    def _on_plan(self, generation: int, result: dict[str, Any]) -> None:
        if generation != self._generation:
            return  # a newer choice superseded this preview
        self.preview = result
        self._allow_start(None)
        self.plan_text.setText(render_plan(result))
        self.details_text.setText(render_plan_details(result))
        self.details_button.setEnabled(True)
        self._explain_epsilon()
        self._remember_cost(result["estimate"])
        self._learn_shared_records(result)
        if result["estimate"]["seconds"] is None:
            self._measure(generation, result)
        warnings = list(result["warnings"])
        if warnings:
            self.warnings.setText("<b>Warnings</b><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
                                  + "</ul>")
            self.warnings.show()
        else:
            self.warnings.hide()
        self.plan_ready.emit(result)

    def _measure(self, generation: int, result: dict[str, Any]) -> None:
        """No recent step time of this model on this machine: time one in the helper process."""
        config = self.build_config()
        data = result["dataset"]
        result["estimate"] = {"seconds": None, "basis": "measuring one step on this machine..."}
        self.plan_text.setText(render_plan(result))
        worker = call_in_worker("dpsad_workbench.core:measure_plan_seconds", parent=self, lane=TIMING_LANE,
                                plan=result["plan"],
                                steps=result["steps"], hyper=config.hyper, channels=data["channels"],
                                resolution=data["resolution"], num_classes=data["num_classes"], device=config.device)
        queued = Qt.ConnectionType.QueuedConnection
        worker.yielded.connect(lambda estimate: self._on_estimate(generation, estimate), queued)
        worker.errored.connect(lambda error: self._on_estimate(
            generation, {"seconds": None, "basis": f"could not be measured ({error})"}), queued)
        self._keep(worker)
        worker.start()

    def _on_estimate(self, generation: int, estimate: dict[str, Any]) -> None:
        if generation != self._generation or self.preview is None:
            return
        self.preview["estimate"] = estimate
        self._remember_cost(estimate)
        self.plan_text.setText(render_plan(self.preview))
        self.details_text.setText(render_plan_details(self.preview))
        self.estimate_ready.emit(estimate)

    def _learn_shared_records(self, result: dict[str, Any]) -> None:
        """The plan's budget names the datasets that share records with the private data: stop offering them."""
        shared = {o["fingerprint"] for o in (result.get("budget") or {}).get("overlaps") or []}
        spec = self.data_spec()
        if shared != self._shares.get(spec, set()):
            self._shares[spec] = shared
            self._offer_public()

    def _remember_cost(self, estimate: dict[str, Any]) -> None:
        """Keep the preview's time, and name it beside its preset."""
        if estimate.get("seconds") is not None and self._preview_key is not None:
            self._preset_seconds[self._preview_key] = float(estimate["seconds"])
            self._label_presets(self._preview_key[0])

    def _label_presets(self, key: tuple | None) -> None:
        """Each preset's name, with its time for the data and settings of ``key`` where one was estimated."""
        for index in range(self.preset.count()):
            name = self.preset.itemData(index)
            seconds = None if key is None else self._preset_seconds.get((key, name))
            self.preset.setItemText(index, preset_label(name, seconds))

    def _on_plan_error(self, generation: int, error: BaseException) -> None:
        if generation == self._generation:
            self.preview = None
            self._show_problem(error)
            self.plan_failed.emit(error)

    def _show_problem(self, error: BaseException) -> None:
        from dpsad_workbench.dialogs import describe_error

        _, text, _ = describe_error(error)
        self._allow_start(text.splitlines()[0] if text else "the plan cannot be made")
        self.details_button.setChecked(False)
        self.details_button.setEnabled(False)
        self.warnings.hide()
        self.plan_text.setText("<b>This cannot run yet:</b><br>" + html.escape(text, quote=False).replace("\n", "<br>"))

    def _allow_start(self, reason: str | None) -> None:
        """Start is disabled, with the reason beside it, while the plan says the run cannot run."""
        self.start_button.setEnabled(reason is None)
        self.start_reason.setVisible(reason is not None)
        self.start_reason.setText("" if reason is None else f"Cannot start yet: {reason}")

    def _start(self) -> None:
        try:
            config = self.build_config()
        except Exception as error:  # noqa: BLE001 - the window shows it as a dialog
            self.plan_failed.emit(error)
            from dpsad_workbench.dialogs import show_error

            show_error(self, error)
            return
        self.start_requested.emit(config)


def cost_key(config) -> tuple:
    """What a preset's time depends on besides the preset: the data, the recipe and its public data, the
    steps, the image size and the device (not epsilon or delta: they change the noise, not the work)."""
    return (config.data, config.recipe, config.public_data, config.max_steps, config.resolution, config.device)


def preset_label(name: str, seconds: float | None) -> str:
    """``quick - about 6 min 10 s here`` once estimated for this data on this machine, else the neutral label."""
    return PRESETS[name] if seconds is None else f"{name} - about {format_duration(seconds)} here"


PROTECTION = {"dp": "private data, noise added (protected)", "public": "public data: no privacy cost",
              "postprocess": "the teacher's own images only: no privacy cost",
              "nonprivate": "<b style='color:#b00020'>private data WITHOUT protection: NOT PRIVATE</b>"}


def show_start(combo: QComboBox) -> None:
    """An editable combo box scrolls its text to the end when an entry is chosen: show the start (the name),
    not a cut-off tail ("enerated font digits (public, 10 classes)"), when the column is narrower than it."""
    edit = combo.lineEdit()
    if edit is not None:
        edit.setCursorPosition(0)


def render_plan(result: dict[str, Any]) -> str:
    """The preview as HTML in an analyst's words: the data, the parts of the run, the guarantee, time, budget.

    The exact values (noise multipliers, sample rates, accountants) are in :func:`render_plan_details`.
    """
    plan, data = result["plan"], result["dataset"]
    phase_seconds = result["estimate"].get("phases") or {}
    rows = []
    for phase in plan["phases"]:
        steps = result["steps"].get(phase["name"], phase["steps"])
        seconds = phase_seconds.get(phase["name"])
        took = "-" if seconds is None else f"about {format_duration(seconds)}"
        rows.append(f"<tr><td>{phase['name']}</td><td>{PROTECTION.get(phase['privacy'], phase['privacy'])}</td>"
                    f"<td align='right'>{steps}</td><td align='right'>{phase['expected_batch_size']:.0f}</td>"
                    f"<td align='right'>{took}</td></tr>")
    planned = plan["planned_epsilon"].get("certified")
    cut = result.get("run_epsilon")
    if result["private"] and cut is not None:  # Max steps stops the run before its plan: it spends less
        epsilon_line = (f"Privacy guarantee of this run: <b>epsilon {format_epsilon(cut)}</b>, as Max steps stops it "
                        f"early (all planned steps: epsilon {format_epsilon(planned)}, for your target "
                        f"{plan['epsilon_target']:g}), with delta {plan['delta']:.3g}: the small chance that the "
                        "guarantee does not hold.")
    elif result["private"]:
        epsilon_line = (f"Privacy guarantee of the whole run: <b>epsilon {format_epsilon(planned)}</b> (your target "
                        f"{plan['epsilon_target']:g}), with delta {plan['delta']:.3g}: the small chance that the "
                        "guarantee does not hold.")
    else:
        epsilon_line = ("<b style='color:#b00020'>NOT differentially private: no privacy guarantee (epsilon = "
                        f"infinity).</b> The published method would claim {plan.get('claimed_epsilon_paper')}; that "
                        "claim does not hold.")
    estimate = result["estimate"]
    if estimate["seconds"] is None:
        time_line = f"Estimated time: {estimate['basis']}"
    else:
        time_line = f"Estimated time: about {format_duration(estimate['seconds'])} ({time_origin(estimate)})."
    budget = result.get("budget")
    if result.get("budget_error"):
        budget_line = f"Budget left on this dataset: could not be read ({html.escape(result['budget_error'])})."
    elif budget:
        shared = budget.get("overlaps") or []  # runs on these count here too: say why
        budget_line = budget_text(budget) + "".join(f" {html.escape(overlap_text(o))}" for o in shared)
    else:
        budget_line = "Budget left on this dataset: nothing spent yet."
    unit = "patients" if data["unit"] == "patient" else "images"
    devices = result.get("devices")
    devices_line = f"<p>Trains on: {html.escape(devices)} (Settings: Devices).</p>" if devices else ""
    return (f"<p><b>{html.escape(data['name'])}</b>: {data['num_records']:,} images, {data['num_privacy_units']:,} "
            f"{unit} protected, {data['num_classes']} classes, {data['resolution']}x{data['resolution']}"
            f" pixels, {'grey' if data['channels'] == 1 else 'colour'}.</p>"
            "<table cellspacing='0' cellpadding='3' border='1' style='border-collapse:collapse'>"
            "<tr><th>part</th><th>learns from</th><th>steps</th><th>images per step</th><th>time</th></tr>"
            + "".join(rows) + "</table>"
            f"<p>{epsilon_line}</p><p>{time_line}</p>{devices_line}<p>{budget_line}</p>")


def time_origin(estimate: dict[str, Any]) -> str:
    """Where the time comes from, in an analyst's words; the measurement itself is in the Details."""
    age = estimate.get("age_seconds")
    when = "just now" if not isinstance(age, (int, float)) or age < 60 else f"{format_duration(age)} ago"
    if estimate.get("source") == "run":
        return f"from the speed of a run on this computer {when}; each finished run updates it"
    return f"a training step timed on this computer {when}; each finished run updates it"


def render_plan_details(result: dict[str, Any]) -> str:
    """The exact values behind the preview, for the officer who checks them (the Details button)."""
    plan = result["plan"]
    rows = []
    for phase in plan["phases"]:
        if phase["privacy"] == "dp":
            noise = f"{phase['noise_multiplier']:.4g}"
            if phase["disc_private"]:
                noise += (f" (student {phase['model_noise_multiplier']:.4g}, "
                          f"discriminator {phase['disc_noise_multiplier']:.4g})")
        else:
            noise = "-"
        rows.append(f"<tr><td>{phase['name']}</td><td>{phase['privacy']}</td><td>{phase['data']}</td>"
                    f"<td align='right'>{phase['sample_rate']:.4g}</td><td>{noise}</td></tr>")
    accountants = ", ".join(f"{name} {format_epsilon(value)}" for name, value in plan["planned_epsilon"].items()
                            if name != "certified")
    lines = ["<table cellspacing='0' cellpadding='3' border='1' style='border-collapse:collapse'>"
             "<tr><th>phase</th><th>privacy</th><th>data</th><th>sample rate</th><th>noise multiplier (sigma)"
             "</th></tr>" + "".join(rows) + "</table>",
             f"<p>Planned epsilon by accountant: {accountants or '-'}; the guarantee is the smallest. Delta "
             f"{plan['delta']:.3g} (default: the smaller of 1e-5 and 0.1 / privacy units).</p>"]
    basis = result.get("estimate", {}).get("basis")
    if basis:
        lines.append(f"<p>Time estimate: {html.escape(basis)}.</p>")
    raw = result.get("raw_warnings") or []
    if raw:
        lines.append("<p>Planner notes: " + "; ".join(html.escape(w) for w in raw) + "</p>")
    return "".join(lines)


def budget_text(budget: dict[str, Any]) -> str:
    """One sentence from the ledger's summary (``LedgerSummary.to_dict()``)."""
    spent = budget.get("spent")
    if isinstance(spent, dict):
        spent = spent.get("certified")
    if budget.get("private") is False:
        spent = float("inf")
    cap = budget.get("cap_epsilon")
    remaining = budget.get("remaining")
    runs = budget.get("runs")
    count = len(runs) if isinstance(runs, (list, tuple)) else runs
    text = f"Budget on this dataset: spent epsilon {format_epsilon(spent if spent is not None else 0.0)}"
    if cap is not None:
        text += f" of a cap of {format_epsilon(cap)}, about {format_epsilon(remaining)} left"
    else:
        text += " (no cap set)"
    if count is not None:
        text += f", over {count} run(s)"
    after = budget.get("after_this_run")
    if after is not None:
        text += f". This run would bring the total to {format_epsilon(after)}"
        if cap is not None:
            text += " (over the cap: it will be refused)" if after > cap * (1 + 1e-9) else " (within the cap)"
    return text + "."


def overlap_text(overlap: dict[str, Any]) -> str:
    """One shared-records link of the ledger (``PrivacyLedger.overlaps``) in plain words."""
    other = f"dataset {overlap['name']}" if overlap.get("name") else (
        f"a dataset no longer in the workspace ({overlap['fingerprint'][:24]}...)")
    if overlap.get("identical"):
        shared = f"Shares {overlap['identical']:,} record(s) with {other}"
    else:
        shared = (f"Shares about {overlap.get('resized', 0):.0%} of its records, at another image size, "
                  f"with {other}")
    return shared + ": a run on either is charged to both."
