"""Help: a short guide to epsilon, delta, the unit of privacy and the recipes (F1 or Help > Guide).

Written for the analyst and the privacy officer: what the numbers promise, not how they are computed.
"""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

GUIDE_HTML = """
<h2>DP-SAD Workbench: a short guide</h2>
<p>The workbench trains a model that generates synthetic images from your private images, with a
<b>differential privacy</b> guarantee, and exports a signed bundle of synthetic images with a privacy report.</p>

<h3>Epsilon</h3>
<p>Epsilon is how much the result may depend on any one person's data. Take any one patient (or image):
whether it was used in training or not, every possible result is at most <i>e<sup>epsilon</sup></i> times more or
less likely. Smaller is more private: epsilon 1 means at most 2.7 times, epsilon 8 at most about 3,000 times.
Typical choices are 1 to 10; below about 1 the images are mostly noise unless the dataset is large. Choose it
on the New run screen; the plan shows what it implies before anything runs.</p>

<h3>Delta</h3>
<p>Delta is the small chance that the epsilon promise does not hold at all. It must be far below one in the
number of people: the workbench chooses 1e-5, or less for small datasets, unless you type another.</p>

<h3>The unit of privacy</h3>
<p>The guarantee protects one <b>unit</b>: one image, or one <b>patient</b> with all of their images when the
import names patients (a manifest with a patient column, or DICOM files). A patient with several images is
protected as a whole only when the unit is the patient: import with patient ids when a person can have several
images.</p>

<h3>The privacy budget</h3>
<p>Every run spends some privacy on the dataset it reads, and the spending adds up across runs. The Datasets
screen shows each run's epsilon and the total, which the ledger computes by combining all the runs' noise (it is
less than the sum of the runs' epsilons). A cap refuses runs that would bring the total above it.</p>

<h3>Recipes</h3>
<ul>
<li><b>dpdm</b> (the default): one model trained with privacy noise; optional free pre-training on public
images with the same classes.</li>
<li><b>dpsad</b>: a private teacher model, then a fast student that learns only from the teacher's own images:
the student costs no privacy and makes an image in 4 steps instead of 25.</li>
<li><b>dpsad-split</b>: a private teacher, then a private student trained on your data: the budget is split
between them.</li>
<li><b>dpsad-public-teacher</b>: the teacher learns from public images only; the student is private.</li>
<li><b>dpsad-paper</b>: the published method. NOT private (epsilon is infinite); for research only, and its
export is stamped NOT DIFFERENTIALLY PRIVATE.</li>
</ul>

<h3>What the guarantee does not cover</h3>
<p>It limits what can be learned about one person, not facts about the population (how a disease looks). It
does not make the images realistic or useful: Evaluate on the Runs screen measures that on real test images the
model never saw. The local run folder (checkpoints, losses) is not covered: share only the exported bundle.</p>

<h3>Shortcuts</h3>
<p>Ctrl+1 to Ctrl+6 switch screens; F6 moves between the screen list and the screen; F1 opens this guide.</p>
"""


class HelpDialog(QDialog):
    """The guide in a non-modal window the analyst can keep open beside the screens."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("DP-SAD Workbench guide")
        layout = QVBoxLayout(self)
        self.text = QTextBrowser()
        self.text.setHtml(GUIDE_HTML)
        layout.addWidget(self.text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout.addWidget(buttons)
        self.resize(640, 560)
