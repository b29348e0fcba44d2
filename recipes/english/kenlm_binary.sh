#!/usr/bin/env bash
# KenLM's build_binary, compiled from the kenlm source distribution on PyPI, then ARPA -> KenLM binary (trie).
#
#   bash recipes/english/kenlm_binary.sh LM.arpa.gz LM.bin
#
# Why: KenLM parses an ARPA file at every start (0.7-1.5 s for the English model's 1.8 M n-grams), while it
# maps a binary one into memory in about 10 ms, with the same scores (no quantisation here), at the size of
# the gzipped ARPA. The decoder (flashlight-text's KenLM) reads both; only building the binary needs this
# tool, which no wheel ships: pip's `kenlm` package builds the Python module only. Needs g++ and zlib's
# headers (Debian: g++ zlib1g-dev). The tool is kept in data/tools/.
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 LM.arpa[.gz] OUT.bin" >&2; exit 2; }
TOOLS=${TOOLS:-data/tools}
KENLM_VERSION=${KENLM_VERSION:-0.3.0}
tool=$TOOLS/build_binary

if [[ ! -x $tool ]]; then
    mkdir -p "$TOOLS/src"
    python -m pip download --quiet --no-deps --no-build-isolation "kenlm==$KENLM_VERSION" -d "$TOOLS/src"  # an sdist only
    tar -xzf "$TOOLS/src/kenlm-$KENLM_VERSION.tar.gz" -C "$TOOLS/src"
    src=$TOOLS/src/kenlm-$KENLM_VERSION
    echo "compiling KenLM's build_binary (a few minutes)" >&2
    # The sources build_binary links, as KenLM's CMake lists them, without its Boost-using tools.
    g++ -O2 -w -DKENLM_MAX_ORDER=6 -DHAVE_ZLIB -I"$src" -o "$tool.tmp" "$src/lm/build_binary_main.cc" \
        "$src"/lm/{bhiksha,binary_format,config,lm_exception,model,quantize,read_arpa,search_hashed}.cc \
        "$src"/lm/{search_trie,sizes,trie,trie_sort,value_build,virtual_interface,vocab}.cc \
        "$src"/util/{bit_packing,ersatz_progress,exception,file,file_piece,float_to_string}.cc \
        "$src"/util/{integer_to_string,mmap,murmur_hash,parallel_read,pool,read_compressed,scoped}.cc \
        "$src"/util/{spaces,string_piece,usage}.cc "$src"/util/double-conversion/*.cc -lz -lpthread
    mv "$tool.tmp" "$tool"
fi
"$tool" -S 10% trie "$1" "$2.tmp" > /dev/null
mv "$2.tmp" "$2"
echo "$2: $(du -h "$2" | cut -f1) (from $1)"
