#!/bin/sh
# The shared library exports ldm_* and nothing else (version script + hidden visibility).
lib="$1"
leaks=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^ldm_' | grep -vE '^(_init|_fini|_edata|_end|__bss_start)$')
count=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -c '^ldm_')
if [ -n "$leaks" ]; then
  echo "non-ldm_ symbols exported by $lib:"; echo "$leaks"; exit 1
fi
[ "$count" -ge 30 ] || { echo "only $count ldm_ symbols exported: the API is missing"; exit 1; }
echo "$count ldm_ symbols exported, nothing else"
