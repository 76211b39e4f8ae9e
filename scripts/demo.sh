#!/usr/bin/env bash
# One command: set up, build the demo dataset (scikit-learn digits with planted problems),
# audit it, write the report and a cleaned label CSV, and say where everything is.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export FIFTYONE_DO_NOT_TRACK=true
.venv/bin/python -m imgaudit.demo demo_data >/dev/null
set +e
# The digits are 8x8 scans: a 64-bit perceptual hash holds nearly the whole image, so
# distinct digits of one class collide at the default radius (tuned on photos).
# radius 2 keeps the true copies (see README, "Limits").
.venv/bin/imgaudit audit demo_data --size 64 --out demo_out --option near_duplicates.radius=2
rc=$?
set -e
# exit code 1 means "issues found" - exactly what the demo plants
if [ "$rc" -gt 1 ]; then exit "$rc"; fi
.venv/bin/imgaudit clean demo_out --out demo_out/cleaned.csv --quiet || [ $? -eq 1 ]
echo
echo "Demo dataset:      $(pwd)/demo_data   (planted problems: demo_data/PLANTED.json)"
echo "Saved audit:       $(pwd)/demo_out    (load with imgaudit.AuditResult.load)"
echo "HTML report:       $(pwd)/demo_out/report.html"
echo "Cleaned label CSV: $(pwd)/demo_out/cleaned.csv  (+ changes.csv)"
echo "Review in the FiftyOne App: .venv/bin/imgaudit review demo_out"
