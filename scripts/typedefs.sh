#!/usr/bin/env bash
# Regenerate typedefs.list (the type names pgindent must know) from src/.
set -euo pipefail
cd "$(dirname "$0")/.."
{
	grep -rhoE '^\} ([A-Z][A-Za-z0-9_]+);' src | sed -E 's/^\} ([A-Za-z0-9_]+);/\1/' || true
	grep -rhoE '^typedef [a-z_ ]+\(\*?([A-Za-z0-9_]+)\)' src | sed -E 's/.*\(\*?([A-Za-z0-9_]+)\)/\1/' || true
} | sort -u >typedefs.list
