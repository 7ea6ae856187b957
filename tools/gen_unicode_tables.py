#!/usr/bin/env python3
"""Generates src/core/unicode_tables.{h,c}: the Unicode data the CLIP tokenizer needs.

Everything is derived from this Python's `unicodedata`, `str` methods and `html` module,
because the reference tokenizer (openai/CLIP simple_tokenizer.py + ftfy 6.1.1 + html.unescape
+ the `regex` module) runs on exactly those. The few tables that are ftfy constants rather
than Unicode data (ligatures, control characters, the width map's extra U+3000) are copied
here from ftfy 6.1.1's chardata.py by meaning, with a note each.

Usage: python3 tools/gen_unicode_tables.py [OUTDIR]   (default: src/core next to this script)
Only the standard library is needed.
"""

import html
import html.entities
import os
import sys
import unicodedata

MAX_CP = 0x110000


def chars():
    for c in range(MAX_CP):
        if 0xD800 <= c <= 0xDFFF:
            continue
        yield c


def to_ranges(cps):
    """Sorted code points -> list of inclusive (lo, hi)."""
    out = []
    for c in sorted(cps):
        if out and out[-1][1] + 1 == c:
            out[-1][1] = c
        else:
            out.append([c, c])
    return [tuple(r) for r in out]


def to_value_ranges(pairs):
    """Sorted (cp, value) -> list of (lo, hi, value) runs of equal value on consecutive cps."""
    out = []
    for c, v in sorted(pairs):
        if out and out[-1][1] + 1 == c and out[-1][2] == v:
            out[-1][1] = c
        else:
            out.append([c, c, v])
    return [tuple(r) for r in out]


# ---------------------------------------------------------------------------------------------
# General category classes used by the pre-split regex of simple_tokenizer.py:
#   [\p{L}]+ | [\p{N}] | [^\s\p{L}\p{N}]+ ; \d of ftfy's ANSI_RE is Python re's \d = Nd.
CLS_L, CLS_ND, CLS_NO = 1, 2, 3


def gc_table():
    pairs = []
    for c in chars():
        cat = unicodedata.category(chr(c))
        if cat[0] == 'L':
            pairs.append((c, CLS_L))
        elif cat == 'Nd':
            pairs.append((c, CLS_ND))
        elif cat[0] == 'N':
            pairs.append((c, CLS_NO))
    return to_value_ranges(pairs)


def white_space():
    # The `regex` module's \s is the Unicode White_Space property. Python's str.isspace()
    # (used by str.strip()) is White_Space plus U+001C..U+001F (bidi class B/S), so
    # White_Space = isspace() minus those four.
    isspace = [c for c in chars() if chr(c).isspace()]
    ws = [c for c in isspace if not 0x1C <= c <= 0x1F]
    return to_ranges(ws), to_ranges(isspace)


def case_tables():
    """Lower-case mapping as in str.lower(), and the Cased / Case_Ignorable properties that
    CPython's final-sigma rule (handle_capital_sigma) uses, found by probing str.lower()."""
    single = []
    special = []
    for c in chars():
        if c == 0x3A3:  # capital sigma: context dependent, handled in code
            continue
        lo = chr(c).lower()
        if lo == chr(c):
            continue
        if len(lo) == 1:
            single.append((c, ord(lo) - c))
        else:
            special.append((c, [ord(x) for x in lo]))
    # Runs of equal delta with stride 1 or 2 (upper/lower pairs alternate in many blocks).
    runs = []
    i = 0
    while i < len(single):
        c, d = single[i]
        stride = 1
        j = i + 1
        if j < len(single) and single[j][1] == d and single[j][0] - c in (1, 2):
            stride = single[j][0] - c
            while j < len(single) and single[j][1] == d and single[j][0] - single[j - 1][0] == stride:
                j += 1
        runs.append((c, single[j - 1][0], d, stride))
        i = j

    sigma_final, sigma = '\u03c2', '\u03c3'
    ignorable = []
    cased = []
    for c in chars():
        x = chr(c)
        if c == 0x3A3:
            cased.append(c)  # capital sigma is Uppercase, not ignorable
            continue
        after_cased = ('A' + x + '\u03a3').lower()[-1] == sigma_final
        alone = (x + '\u03a3').lower()[-1] == sigma_final
        if after_cased and not alone:
            ignorable.append(c)
        elif alone:
            cased.append(c)
        # Cross-check with the Cased definition (Lowercase | Uppercase | Lt) for the chars
        # whose casedness the rule can observe (the non-ignorable ones).
        if not (after_cased and not alone):
            prop = x.islower() or x.isupper() or unicodedata.category(x) == 'Lt'
            assert prop == alone, hex(c)
    return runs, special, to_ranges(cased), to_ranges(ignorable)


def ccc_table():
    pairs = [(c, unicodedata.combining(chr(c))) for c in chars() if unicodedata.combining(chr(c))]
    return to_value_ranges(pairs)


def decomposition_tables():
    """One-level canonical decompositions (Hangul excluded: algorithmic) and the primary
    composites: pairs whose composite survives NFC (so composition exclusions, singletons and
    non-starter decompositions drop out exactly as Python's unicodedata has them)."""
    decomp = []
    comp = []
    for c in chars():
        if 0xAC00 <= c <= 0xD7A3:
            continue
        d = unicodedata.decomposition(chr(c))
        if not d or d.startswith('<'):
            continue
        parts = [int(p, 16) for p in d.split()]
        assert 1 <= len(parts) <= 2
        decomp.append((c, parts[0], parts[1] if len(parts) == 2 else 0))
        if len(parts) == 2 and unicodedata.normalize('NFC', chr(c)) == chr(c):
            comp.append((parts[0], parts[1], c))
    comp.sort()
    return decomp, comp


def width_map():
    # ftfy 6.1.1 chardata._build_width_map: U+3000 -> ' ', and every U+FF01..U+FFEF whose
    # NFKC form differs is replaced by that form.
    m = {0x3000: [0x20]}
    for c in range(0xFF01, 0xFFF0):
        alt = unicodedata.normalize('NFKC', chr(c))
        if alt != chr(c):
            m[c] = [ord(x) for x in alt]
    return sorted(m.items())


# ftfy 6.1.1 chardata.LIGATURES (fix_latin_ligatures): Dutch ĳ, Afrikaans ŉ, the
# Serbian/Croatian digraphs and the Latin typographic ligatures.
LIGATURES = {
    0x0132: 'IJ', 0x0133: 'ij', 0x0149: '\u02bcn',
    0x01F1: 'DZ', 0x01F2: 'Dz', 0x01F3: 'dz',
    0x01C4: 'D\u017d', 0x01C5: 'D\u017e', 0x01C6: 'd\u017e',
    0x01C7: 'LJ', 0x01C8: 'Lj', 0x01C9: 'lj',
    0x01CA: 'NJ', 0x01CB: 'Nj', 0x01CC: 'nj',
    0xFB00: 'ff', 0xFB01: 'fi', 0xFB02: 'fl', 0xFB03: 'ffi', 0xFB04: 'ffl',
    0xFB05: '\u017ft', 0xFB06: 'st',
}

# ftfy 6.1.1 chardata._build_control_char_mapping (remove_control_chars).
CONTROL_RANGES = [(0x00, 0x08), (0x0B, 0x0B), (0x0E, 0x1F), (0x7F, 0x7F), (0x206A, 0x206F),
                  (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFC)]


def sloppy_1252_c1():
    # ftfy fix_c1_controls: U+0080..U+009F -> byte -> 'sloppy-windows-1252' (Windows-1252 where
    # the five unassigned bytes decode to the same-numbered C1 character).
    out = []
    for b in range(0x80, 0xA0):
        try:
            s = bytes([b]).decode('cp1252')
        except UnicodeDecodeError:
            s = chr(b)
        out.append((b, [ord(x) for x in s]))
    return out


def html_tables():
    html5 = sorted((k, [ord(x) for x in v]) for k, v in html.entities.html5.items())
    # ftfy 6.1.1 chardata._build_html_entities: besides html5 names ending in ';', an all-caps
    # variant of each all-lower-case name decodes to the upper-cased text, unless Python's
    # html.unescape would already change that spelling.
    upper = []
    for name, ch in html.entities.html5.items():
        if name.endswith(';') and name == name.lower():
            ent = '&' + name.upper()
            if html.unescape(ent) == ent:
                upper.append((name.upper(), [ord(x) for x in ch.upper()]))
    upper.sort()
    # html.unescape's numeric-reference fix-ups (private tables of the html module).
    inv_refs = sorted((k, [ord(x) for x in v]) for k, v in html._invalid_charrefs.items())
    inv_cps = to_ranges(html._invalid_codepoints)
    return html5, upper, inv_refs, inv_cps


# ---------------------------------------------------------------------------------------------

def fmt_rows(items, per_line):
    lines = []
    for i in range(0, len(items), per_line):
        lines.append('    ' + ' '.join(items[i:i + per_line]))
    return '\n'.join(lines)


def emit_ranges(name, ranges, per_line=6):
    items = ['{0x%X, 0x%X},' % r for r in ranges]
    return ('const ldm_urange %s[] = {\n%s\n};\nconst size_t %s_count = %d;\n\n'
            % (name, fmt_rows(items, per_line), name, len(ranges)))


def emit_value_ranges(name, ranges, per_line=5):
    items = ['{0x%X, 0x%X, %d},' % r for r in ranges]
    return ('const ldm_urange_val %s[] = {\n%s\n};\nconst size_t %s_count = %d;\n\n'
            % (name, fmt_rows(items, per_line), name, len(ranges)))


def emit_maps(name, maps, per_line=3):
    items = []
    for cp, out in maps:
        assert len(out) <= 3
        vals = ', '.join('0x%X' % x for x in out) if out else '0'
        items.append('{0x%X, %d, {%s}},' % (cp, len(out), vals))
    return ('const ldm_umap %s[] = {\n%s\n};\nconst size_t %s_count = %d;\n\n'
            % (name, fmt_rows(items, per_line), name, len(maps)))


def emit_entities(name, ents, per_line=3):
    items = []
    for nm, out in ents:
        assert len(out) <= 3 and all(32 < ord(ch) < 127 for ch in nm)
        items.append('{"%s", %d, {%s}},' % (nm, len(out), ', '.join('0x%X' % x for x in out)))
    return ('const ldm_uentity %s[] = {\n%s\n};\nconst size_t %s_count = %d;\n\n'
            % (name, fmt_rows(items, per_line), name, len(ents)))


HEADER = '''/* Unicode and HTML tables for the CLIP tokenizer's text normalisation.
 * GENERATED by tools/gen_unicode_tables.py from Python %(py)s (Unicode %(uv)s); do not edit. */
#ifndef LDM_CORE_UNICODE_TABLES_H
#define LDM_CORE_UNICODE_TABLES_H

#include <stddef.h>
#include <stdint.h>

#define LDM_UNICODE_VERSION "%(uv)s"

/* Sorted, disjoint, inclusive code point ranges. */
typedef struct { uint32_t lo, hi; } ldm_urange;
/* Same, with a small value for the whole range. */
typedef struct { uint32_t lo, hi, val; } ldm_urange_val;
/* Lower-case run: every cp in [lo, hi] with (cp - lo) %% stride == 0 maps to cp + delta. */
typedef struct { uint32_t lo, hi; int32_t delta; uint32_t stride; } ldm_ucase_run;
/* One-level canonical decomposition cp -> a b (b == 0: singleton), or composition a b -> cp. */
typedef struct { uint32_t cp, a, b; } ldm_upair;
/* A code point replaced by n (0..3) code points; sorted by cp. */
typedef struct { uint32_t cp, n; uint32_t out[3]; } ldm_umap;
/* A named HTML entity (name as written after '&', ';' included when present); sorted by name. */
typedef struct { const char *name; uint32_t n; uint32_t out[3]; } ldm_uentity;

enum { LDM_UCLS_L = 1, LDM_UCLS_ND = 2, LDM_UCLS_NO = 3 };

/* General category classes: L* -> LDM_UCLS_L, Nd -> LDM_UCLS_ND, Nl/No -> LDM_UCLS_NO. */
extern const ldm_urange_val ldm_u_gc[];
extern const size_t ldm_u_gc_count;
/* White_Space (the `regex` module's \\s) and str.isspace() (str.strip()). */
extern const ldm_urange ldm_u_white_space[];
extern const size_t ldm_u_white_space_count;
extern const ldm_urange ldm_u_isspace[];
extern const size_t ldm_u_isspace_count;
/* str.lower(): single code point runs, multi code point specials (U+0130), final-sigma data. */
extern const ldm_ucase_run ldm_u_lower[];
extern const size_t ldm_u_lower_count;
extern const ldm_umap ldm_u_lower_special[];
extern const size_t ldm_u_lower_special_count;
extern const ldm_urange ldm_u_cased[];
extern const size_t ldm_u_cased_count;
extern const ldm_urange ldm_u_case_ignorable[];
extern const size_t ldm_u_case_ignorable_count;
/* NFC data: canonical combining classes, decompositions (sorted by cp), primary composites
 * (sorted by a, b). Hangul syllables are algorithmic and not listed. */
extern const ldm_urange_val ldm_u_ccc[];
extern const size_t ldm_u_ccc_count;
extern const ldm_upair ldm_u_decomp[];
extern const size_t ldm_u_decomp_count;
extern const ldm_upair ldm_u_comp[];
extern const size_t ldm_u_comp_count;
/* ftfy 6.1.1 fixers: WIDTH_MAP, LIGATURES, C1 -> sloppy-windows-1252, CONTROL_CHARS. */
extern const ldm_umap ldm_ftfy_width[];
extern const size_t ldm_ftfy_width_count;
extern const ldm_umap ldm_ftfy_ligatures[];
extern const size_t ldm_ftfy_ligatures_count;
extern const ldm_umap ldm_ftfy_c1[];
extern const size_t ldm_ftfy_c1_count;
extern const ldm_urange ldm_ftfy_control[];
extern const size_t ldm_ftfy_control_count;
/* Python html.entities.html5, ftfy's extra all-caps entities (names end in ';'), and
 * html.unescape's numeric fix-ups (_invalid_charrefs, _invalid_codepoints). */
extern const ldm_uentity ldm_html5_entities[];
extern const size_t ldm_html5_entities_count;
extern const ldm_uentity ldm_ftfy_upper_entities[];
extern const size_t ldm_ftfy_upper_entities_count;
extern const ldm_umap ldm_html_invalid_charrefs[];
extern const size_t ldm_html_invalid_charrefs_count;
extern const ldm_urange ldm_html_invalid_codepoints[];
extern const size_t ldm_html_invalid_codepoints_count;

#endif
'''


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), '..', 'src', 'core')
    py = '%d.%d' % sys.version_info[:2]
    uv = unicodedata.unidata_version

    gc = gc_table()
    ws, isspace = white_space()
    lower_runs, lower_special, cased, ignorable = case_tables()
    assert [c for c, _ in lower_special] == [0x130], lower_special
    ccc = ccc_table()
    decomp, comp = decomposition_tables()
    width = width_map()
    ligs = sorted((c, [ord(x) for x in s]) for c, s in LIGATURES.items())
    c1 = sloppy_1252_c1()
    html5, upper, inv_refs, inv_cps = html_tables()

    c = ['/* GENERATED by tools/gen_unicode_tables.py from Python %s (Unicode %s); do not edit. */\n'
         '#include "unicode_tables.h"\n\n' % (py, uv)]
    c.append(emit_value_ranges('ldm_u_gc', gc))
    c.append(emit_ranges('ldm_u_white_space', ws))
    c.append(emit_ranges('ldm_u_isspace', isspace))
    items = ['{0x%X, 0x%X, %d, %d},' % r for r in lower_runs]
    c.append('const ldm_ucase_run ldm_u_lower[] = {\n%s\n};\nconst size_t ldm_u_lower_count = %d;\n\n'
             % (fmt_rows(items, 4), len(lower_runs)))
    c.append(emit_maps('ldm_u_lower_special', lower_special))
    c.append(emit_ranges('ldm_u_cased', cased))
    c.append(emit_ranges('ldm_u_case_ignorable', ignorable))
    c.append(emit_value_ranges('ldm_u_ccc', ccc))
    items = ['{0x%X, 0x%X, 0x%X},' % r for r in decomp]
    c.append('const ldm_upair ldm_u_decomp[] = {\n%s\n};\nconst size_t ldm_u_decomp_count = %d;\n\n'
             % (fmt_rows(items, 4), len(decomp)))
    items = ['{0x%X, 0x%X, 0x%X},' % (cp, a, b) for a, b, cp in comp]
    c.append('const ldm_upair ldm_u_comp[] = {\n%s\n};\nconst size_t ldm_u_comp_count = %d;\n\n'
             % (fmt_rows(items, 4), len(comp)))
    c.append(emit_maps('ldm_ftfy_width', width))
    c.append(emit_maps('ldm_ftfy_ligatures', ligs))
    c.append(emit_maps('ldm_ftfy_c1', c1))
    c.append(emit_ranges('ldm_ftfy_control', CONTROL_RANGES))
    c.append(emit_entities('ldm_html5_entities', html5))
    c.append(emit_entities('ldm_ftfy_upper_entities', upper))
    c.append(emit_maps('ldm_html_invalid_charrefs', inv_refs))
    c.append(emit_ranges('ldm_html_invalid_codepoints', inv_cps))

    with open(os.path.join(outdir, 'unicode_tables.h'), 'w', encoding='ascii') as f:
        f.write(HEADER % {'py': py, 'uv': uv})
    with open(os.path.join(outdir, 'unicode_tables.c'), 'w', encoding='ascii') as f:
        f.write(''.join(c).rstrip('\n') + '\n')


if __name__ == '__main__':
    main()
