"""Screenshots of report sections in headless Chromium (the browser test's own open_report):
  python docs/screenshots/make_shots.py is OUT           the test's recorded `is` sweep
  python docs/screenshots/make_shots.py REPORT.html OUT  an existing report"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for tests/
from gansweep.results.report import write_report  # noqa: E402
from gansweep.results.tables import load_tables  # noqa: E402
from tests.test_report import open_report, recorded_sweep  # noqa: E402

what, out = sys.argv[1], Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
if what in ("is", "fid", "kid"):
    report = write_report(load_tables(recorded_sweep(out / "sweep", what)), out / "report.html")
else:
    report = Path(what)
seen = open_report(Path(report), out / "png")
print("messages:", seen["messages"])
print("page scroll/client:", seen["page"])
for name, scroll, client, plots in seen["sections"]:
    print(f"{name}: scroll {scroll} client {client} plots {plots}")
