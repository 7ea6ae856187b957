#!/usr/bin/env python3
"""Regenerates the seed corpora of the fuzz harnesses (tests/fuzz/corpus/{safetensors,json}):
valid tiny files, every broken variant tests/test_loader.c checks, and a few seeded random
mutations. Deterministic; run from anywhere: python3 tests/fuzz/gen_corpus.py
Files named fuzz-* (inputs kept from real fuzzing runs) are left alone."""
import hashlib
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def st(header, data=b"", hlen=None):
    h = header.encode("utf-8", "surrogateescape") if isinstance(header, str) else header
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


def pattern(n):
    return bytes((i * 7 + 1) & 0xFF for i in range(n))


def entry(name, dtype, shape, b, e):
    return '"%s":{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}' % (
        name, dtype, ",".join(str(d) for d in shape), b, e)


T1 = entry("a", "F32", [2, 2], 0, 16)
T2 = entry("b", "F16", [3], 16, 22)
VALID = '{"__metadata__":{"format":"pt"},' + T1 + "," + T2 + "}"


def safetensors_cases():
    c = {}
    good = st(VALID, pattern(22))
    c["valid_two_tensors"] = good
    c["valid_empty_header"] = st("{}")
    c["valid_padded"] = st("{}      ")
    c["valid_metadata_only"] = st('{"__metadata__":{"format":"pt","k":"v \\"q\\" \\u00e9"}}')
    c["valid_all_dtypes"] = st("{" + ",".join([
        entry("f64", "F64", [1], 0, 8), entry("f32", "F32", [1], 8, 12), entry("f16", "F16", [2], 12, 16),
        entry("bf16", "BF16", [2], 16, 20), entry("i64", "I64", [1], 20, 28), entry("i32", "I32", [1], 28, 32),
        entry("i16", "I16", [2], 32, 36), entry("i8", "I8", [2], 36, 38), entry("u8", "U8", [1], 38, 39),
        entry("bool", "BOOL", [1], 39, 40)]) + "}", pattern(40))
    c["valid_scalar_and_empty"] = st("{" + entry("s", "F64", [], 0, 8) + "," + entry("e", "F32", [0, 5], 8, 8) + "}",
                                     pattern(8))
    c["valid_8_dims"] = st("{" + entry("a", "U8", [1, 2, 1, 2, 1, 2, 1, 2], 0, 16) + "}", pattern(16))
    c["valid_zero_dim_huge"] = st("{" + entry("a", "F32", [0, 4611686018427387904], 0, 0) + "}")
    c["valid_utf8_name"] = st('{"caf\u00e9.\u20ac":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', pattern(4))
    c["valid_sd1_keys"] = st("{" + ",".join([
        entry("model.diffusion_model.input_blocks.0.0.weight", "F32", [1, 4, 1, 1], 0, 16),
        entry("first_stage_model.encoder.conv_in.weight", "F16", [1, 3, 1, 1], 16, 22),
        entry("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", "BF16", [2, 2], 22, 30),
        entry("model.diffusion_model.out.2.weight", "F32", [4, 1, 1, 1], 30, 46)]) + "}", pattern(46))
    # truncation and lengths
    c["empty"] = b""
    c["short5"] = b"\x10\0\0\0\0"
    c["short7"] = b"\x02\0\0\0\0\0\0"
    c["len0"] = b"\0" * 8
    c["cut_data"] = good[:-5]
    c["cut_header_end"] = good[:-22]
    c["cut_header"] = good[:8 + len(VALID) // 2]
    c["cut_prefix"] = good[:4]
    c["hlen_past_eof"] = st("{}", hlen=1000)
    c["hlen_one_past"] = st("{}", hlen=3)
    c["hlen_200mib"] = st("{}", hlen=200 << 20)
    c["hlen_cap_plus_1"] = st("{}", hlen=(100 << 20) + 1)
    c["hlen_huge"] = st("{}", hlen=2 ** 64 - 2)
    c["hlen_2_63"] = st("{}", hlen=2 ** 63)
    c["header_1_byte"] = st("{")
    # header JSON
    for name, h in [("not_json", "hello, world"), ("array", "[1,2,3]"), ("string", '"{}"'), ("number", "12345678"),
                    ("null", "null"), ("trailing", "{} x"), ("two_objects", "{}{}"),
                    ("unterminated_obj", '{"a":{"dtype":"F32"'), ("unterminated_str", '{"abc'),
                    ("trailing_comma", "{" + T1 + ",}"), ("single_quotes", "{'a':1}"),
                    ("bad_escape", '{"a\\q":{}}'), ("nul_escape", '{"a\\u0000b":{}}'),
                    ("lone_surrogate", '{"\\ud800":{}}'), ("raw_tab", '{"a\tb":{}}')]:
        c["hdr_" + name] = st(h, pattern(16))
    for name, raw in [("ff", b'{"\xff\xfe":{}}'), ("cont", b'{"a\x80":{}}'), ("overlong", b'{"\xc0\xaf":{}}'),
                      ("surrogate", b'{"\xed\xa0\x80":{}}'), ("above_max", b'{"\xf4\x90\x80\x80":{}}'),
                      ("truncated_seq", b'{"\xe2\x82":{}}'), ("raw_nul", b'{"a\x00":{}}')]:
        c["utf8_" + name] = st(raw)
    c["deep_brackets"] = st("[" * 3000)
    c["deep_balanced"] = st("[" * 1000 + "]" * 1000)
    c["deep_objects"] = st("{" + '"a":{' * 500)
    c["nested_shape"] = st('{"a":{"dtype":"F32","shape":[[[[[[[[1]]]]]]]],"data_offsets":[0,4]}}', pattern(4))
    c["long_number"] = st('{"a":{"dtype":"F32","shape":[' + "0" * 80 + '1],"data_offsets":[0,4]}}', pattern(4))
    # entries
    E = lambda s: '{"a":{' + s + '}}'
    for name, h, n in [
            ("entry_array", '{"a":[1,2]}', 0), ("entry_string", '{"a":"F32"}', 0),
            ("no_dtype", E('"shape":[1],"data_offsets":[0,4]'), 4),
            ("no_shape", E('"dtype":"F32","data_offsets":[0,4]'), 4),
            ("no_offsets", E('"dtype":"F32","shape":[1]'), 4),
            ("dtype_number", E('"dtype":4,"shape":[1],"data_offsets":[0,4]'), 4),
            ("shape_object", E('"dtype":"F32","shape":{},"data_offsets":[0,4]'), 4),
            ("offsets_1", E('"dtype":"F32","shape":[1],"data_offsets":[4]'), 4),
            ("offsets_3", E('"dtype":"F32","shape":[1],"data_offsets":[0,4,8]'), 8),
            ("offsets_strings", E('"dtype":"F32","shape":[1],"data_offsets":["0","4"]'), 4),
            ("offsets_frac", E('"dtype":"F32","shape":[1],"data_offsets":[0.0,4.0]'), 4),
            ("offsets_neg", E('"dtype":"F32","shape":[1],"data_offsets":[-4,0]'), 4),
            ("offsets_past_eof", E('"dtype":"F32","shape":[4],"data_offsets":[0,16]'), 12),
            ("offsets_far", E('"dtype":"U8","shape":[4],"data_offsets":[9223372036854775800,9223372036854775804]'), 4),
            ("offsets_beyond_i64", E('"dtype":"U8","shape":[4],"data_offsets":[0,18446744073709551620]'), 4),
            ("begin_gt_end", E('"dtype":"F32","shape":[1],"data_offsets":[8,4]'), 8),
            ("overlap", "{" + entry("a", "F32", [4], 0, 16) + "," + entry("b", "F32", [2], 8, 16) + "}", 16),
            ("overlap_same", "{" + entry("a", "F32", [2], 0, 8) + "," + entry("b", "I32", [2], 0, 8) + "}", 8),
            ("overlap_reverse", "{" + entry("b", "F32", [2], 12, 20) + "," + entry("a", "F32", [4], 0, 16) + "}", 20),
            ("overlap_behind_empty", "{" + entry("a", "F32", [25], 0, 100) + "," + entry("e", "F32", [0], 10, 10) +
             "," + entry("c", "F32", [4], 50, 66) + "}", 100),
            ("overlap_contained", "{" + entry("a", "U8", [100], 0, 100) + "," + entry("b", "U8", [10], 10, 20) + "," +
             entry("c", "U8", [10], 30, 40) + "}", 100),
            ("size_small", E('"dtype":"F32","shape":[3],"data_offsets":[0,16]'), 16),
            ("size_large", E('"dtype":"F32","shape":[5],"data_offsets":[0,16]'), 16),
            ("scalar_empty_span", E('"dtype":"F32","shape":[],"data_offsets":[0,0]'), 0),
            ("shape_2_62_sq", E('"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,16]'), 16),
            ("shape_2_32_sq", E('"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]'), 0),
            ("shape_2_62", E('"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]'), 0),
            ("shape_i64_max", E('"dtype":"U8","shape":[9223372036854775807],"data_offsets":[0,16]'), 16),
            ("shape_beyond_i64", E('"dtype":"U8","shape":[99999999999999999999],"data_offsets":[0,1]'), 1),
            ("shape_neg", E('"dtype":"F32","shape":[-1,4],"data_offsets":[0,16]'), 16),
            ("shape_neg_pair", E('"dtype":"F32","shape":[-2,-2],"data_offsets":[0,16]'), 16),
            ("shape_frac", E('"dtype":"F32","shape":[4.0],"data_offsets":[0,16]'), 16),
            ("shape_exp", E('"dtype":"F32","shape":[4e0],"data_offsets":[0,16]'), 16),
            ("shape_string", E('"dtype":"F32","shape":["4"],"data_offsets":[0,16]'), 16),
            ("shape_null", E('"dtype":"F32","shape":[null],"data_offsets":[0,16]'), 16),
            ("shape_9_dims", E('"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]'), 1),
            ("overflow_then_zero", E('"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]'), 0),
            ("dtype_unknown", E('"dtype":"Q4_K","shape":[4],"data_offsets":[0,16]'), 16),
            ("dtype_f8", E('"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]'), 4),
            ("dtype_lower", E('"dtype":"f32","shape":[4],"data_offsets":[0,16]'), 16),
            ("dtype_empty", E('"dtype":"","shape":[4],"data_offsets":[0,16]'), 16),
            ("dup_names", "{" + entry("a", "F32", [1], 0, 4) + "," + entry("a", "F32", [1], 4, 8) + "}", 8),
            ("dup_names_escaped", "{" + entry("ab", "F32", [1], 0, 4) + "," + entry("a\\u0062", "F32", [1], 4, 8) + "}", 8),
            ("meta_array", '{"__metadata__":["a"],' + T1 + "}", 16),
            ("meta_string", '{"__metadata__":"pt",' + T1 + "}", 16),
            ("meta_null", '{"__metadata__":null}', 0),
            ("meta_number_value", '{"__metadata__":{"format":1},' + T1 + "}", 16),
            ("meta_object_value", '{"__metadata__":{"format":{}},' + T1 + "}", 16),
            ("meta_null_value", '{"__metadata__":{"a":"x","b":null}}', 0),
            ("meta_twice", '{"__metadata__":{"a":"1","b":"2","c":"3","d":"4"},"__metadata__":{"e":"5"}}', 0),
            ("meta_twice_empty", '{"__metadata__":{},"__metadata__":{}}', 0),
            ("sdxl_keys", "{" + entry("conditioner.embedders.1.model.token_embedding.weight", "F16", [4, 2], 0, 16) + "}", 16),
    ]:
        c[name] = st(h, pattern(n))
    return c


def json_cases():
    c = {}
    for i, s in enumerate([
            b"{}", b"[]", b"null", b"true", b"false", b"0", b"-0", b"1.5e-3", b"-12345678901234567890",
            b"9223372036854775807", b"-9223372036854775808", b"18446744073709551616", b'"a\\u00e9\\ud83d\\ude00"',
            b'{"a":[1,2,{"b":null}],"c":"d"}', b'{"a":1,"a":2}', b' \t\r\n{ "x" : [ ] } \n',
            b'{"model":{"params":{"unet_config":{"params":{"num_heads":8}}}}}', b"1e999", b"-1E-999",
            b'"\\"\\\\\\/\\b\\f\\n\\r\\t"']):
        c["valid_%02d" % i] = s
    for i, s in enumerate([
            b"", b" ", b"{", b"}", b"[", b"]", b"{,}", b"[1,]", b"{\"a\"}", b"{\"a\":}", b"01", b"1.", b".5",
            b"1e", b"+1", b"-", b"tru", b"nul", b"'a'", b'"abc', b'"\\x"', b'"\\u12"', b'"\\udc00"',
            b'"\\ud800\\u0041"', b'"\\u0000"', b'"\x01"', b'"\xff"', b'"\xc0\xaf"', b'"\xed\xa0\x80"',
            b'"\xf4\x90\x80\x80"', b'"\xe2\x82"', b"[1 2]", b"{} {}", b"[" * 65 + b"]" * 65, b"[" * 64 + b"]" * 64,
            b"[" * 5000, b'{"a":' * 100, b"1" * 70, b"NaN", b"Infinity", b"\xef\xbb\xbf{}"]):
        c["bad_%02d" % i] = s
    return c


def mutate(rng, data, n):
    out = []
    for _ in range(n):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            if op == 0 and b:
                b[rng.randrange(len(b))] = rng.randrange(256)
            elif op == 1 and b:
                del b[rng.randrange(len(b))]
            elif op == 2:
                b.insert(rng.randrange(len(b) + 1), rng.choice(b'{}[]",:0123456789-e.\\'))
            elif op == 3 and len(b) > 2:
                i = rng.randrange(len(b))
                j = rng.randrange(len(b))
                b[i:i] = b[j:j + rng.randint(1, 8)]
        out.append(bytes(b))
    return out


def write(dirname, cases):
    d = os.path.join(HERE, "corpus", dirname)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if not f.startswith("fuzz-"):
            os.unlink(os.path.join(d, f))
    for name, data in sorted(cases.items()):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return d


def main():
    rng = random.Random(20240501)
    sc = safetensors_cases()
    seeds = [sc[k] for k in ("valid_two_tensors", "valid_all_dtypes", "valid_sd1_keys", "valid_scalar_and_empty")]
    k = 0
    for s in seeds:
        for m in mutate(rng, s, 6):
            sc["mut_%02d_%s" % (k, hashlib.sha1(m).hexdigest()[:8])] = m
            k += 1
    jc = json_cases()
    k = 0
    for s in (jc["valid_13"], jc["valid_16"], VALID.encode()):
        for m in mutate(rng, s, 5):
            jc["mut_%02d_%s" % (k, hashlib.sha1(m).hexdigest()[:8])] = m
            k += 1
    jc["st_header_valid"] = VALID.encode()
    for d, cases in (("safetensors", sc), ("json", jc)):
        path = write(d, cases)
        total = sum(len(v) for v in cases.values())
        print("%s: %d files, %d bytes" % (path, len(cases), total))


if __name__ == "__main__":
    main()
