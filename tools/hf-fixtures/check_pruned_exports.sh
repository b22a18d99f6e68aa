#!/usr/bin/env bash
# Dev-time proof that PruneLab's pruned export of every family loads in transformers with no custom code
# and gives the NLL of transformers' own pruned model (the removal golden). Needs a Python with
# transformers + torch: PYTHON=/path/to/python tools/hf-fixtures/check_pruned_exports.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
out=$(mktemp -d)
npx tsx tools/hf-fixtures/export_all.mts "$out"
status=0
for dir in "$out"/*/; do
  name=$(basename "$dir")
  got=$("$PYTHON" tools/hf-fixtures/check_export.py "$dir" "tests/fixtures-hf/$name/ids.json" 2>/dev/null | tail -1)
  node -e '
    const got = JSON.parse(process.argv[1]).nll;
    const want = require(process.argv[2]).removal.nll.mean;
    const rel = Math.abs(got - want) / want;
    console.log(`${process.argv[3].padEnd(16)} transformers on our export ${got.toFixed(10)}  golden ${want.toFixed(10)}  rel ${rel.toExponential(1)}`);
    process.exit(rel <= 1e-6 ? 0 : 1);' "$got" "$PWD/tests/fixtures-hf/$name/golden.json" "$name" || status=1
done
exit $status
