/**
 * A minimal ONNX ModelProto writer: just the protobuf fields onnxruntime needs for small graphs built at
 * load time (nodes, int/float/ints attributes, f32 initializers as raw_data, typed inputs/outputs with
 * symbolic dims). Field numbers are those of onnx/onnx.proto3; no dependency on protobufjs.
 */

function varint(v: number): Uint8Array {
  // int64 fields encode negatives (axis = −1) as 10-byte two's complement.
  let u = v < 0 ? BigInt.asUintN(64, BigInt(v)) : null;
  const out: number[] = [];
  if (u !== null) {
    while (u >= 0x80n) {
      out.push(Number(u & 0x7fn) | 0x80);
      u >>= 7n;
    }
    out.push(Number(u));
    return Uint8Array.from(out);
  }
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Uint8Array.from(out);
}

const utf8 = new TextEncoder();

/**
 * One message under construction, kept as a list of byte chunks: nested messages and big initializers are
 * referenced, not copied, and `encode` copies every byte exactly once (a weight matrix can be 100+ MB).
 */
class Message {
  private readonly chunks: Uint8Array[] = [];
  size = 0;
  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.size += b.length;
  }
  private tag(field: number, wire: number): void {
    this.push(varint(field * 8 + wire));
  }
  int(field: number, v: number): this {
    this.tag(field, 0);
    this.push(varint(v));
    return this;
  }
  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }
  raw(field: number, b: Uint8Array): this {
    this.tag(field, 2);
    this.push(varint(b.length));
    this.push(b);
    return this;
  }
  str(field: number, s: string): this {
    return this.raw(field, utf8.encode(s));
  }
  msg(field: number, m: Message): this {
    this.tag(field, 2);
    this.push(varint(m.size));
    for (const c of m.chunks) this.push(c);
    return this;
  }
  encode(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

/** TensorProto.DataType values used here. */
export const DataType = { FLOAT: 1, INT64: 7 } as const;

export type Dim = number | string;
export interface ValueInfo {
  name: string;
  type: number;
  dims: readonly Dim[];
}
export type Attribute = { name: string; int: number } | { name: string; float: number } | { name: string; ints: readonly number[] };
export interface NodeSpec {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes?: readonly Attribute[];
  /** Operator domain; '' is the default ONNX domain, 'com.microsoft' onnxruntime's contrib ops. */
  domain?: string;
}
export interface Initializer {
  name: string;
  dims: readonly number[];
  data: Float32Array;
}
export interface GraphSpec {
  name: string;
  nodes: readonly NodeSpec[];
  initializers: readonly Initializer[];
  /** 1-D int64 constants (Reshape shapes and the like). */
  int64Initializers?: readonly { name: string; values: readonly number[] }[];
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
  /** Default-domain opset (13 or later keeps the ops' current signatures). */
  opset?: number;
  /** Extra operator sets, e.g. { 'com.microsoft': 1 }. */
  extraOpsets?: Readonly<Record<string, number>>;
}

// AttributeProto.AttributeType
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

function valueInfo(v: ValueInfo): Message {
  const shape = new Message();
  for (const d of v.dims) shape.msg(1, typeof d === 'number' ? new Message().int(1, d) : new Message().str(2, d));
  const tensorType = new Message().int(1, v.type).msg(2, shape);
  // ValueInfoProto { name = 1; type = 2 }, TypeProto { tensor_type = 1 }
  return new Message().str(1, v.name).msg(2, new Message().msg(1, tensorType));
}

function attribute(a: Attribute): Message {
  const m = new Message().str(1, a.name);
  if ('int' in a) return m.int(3, a.int).int(20, ATTR_INT);
  if ('float' in a) return m.float(2, a.float).int(20, ATTR_FLOAT);
  for (const v of a.ints) m.int(8, v);
  return m.int(20, ATTR_INTS);
}

/** Encodes a ModelProto (IR version 8) holding one graph. */
export function encodeModel(g: GraphSpec): Uint8Array {
  const graph = new Message();
  for (const [i, n] of g.nodes.entries()) {
    const node = new Message();
    for (const x of n.inputs) node.str(1, x);
    for (const y of n.outputs) node.str(2, y);
    node.str(3, `${n.op}_${i}`).str(4, n.op);
    for (const a of n.attributes ?? []) node.msg(5, attribute(a));
    if (n.domain) node.str(7, n.domain);
    graph.msg(1, node);
  }
  graph.str(2, g.name);
  for (const t of g.initializers) {
    const tensor = new Message();
    for (const d of t.dims) tensor.int(1, d);
    tensor.int(2, DataType.FLOAT).str(8, t.name);
    // raw_data is little-endian; every platform onnxruntime ships for (and JS typed arrays here) is too.
    tensor.raw(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    graph.msg(5, tensor);
  }
  for (const t of g.int64Initializers ?? []) {
    const data = BigInt64Array.from(t.values, (v) => BigInt(v));
    graph.msg(5, new Message().int(1, t.values.length).int(2, DataType.INT64).str(8, t.name).raw(9, new Uint8Array(data.buffer)));
  }
  for (const v of g.inputs) graph.msg(11, valueInfo(v));
  for (const v of g.outputs) graph.msg(12, valueInfo(v));
  const model = new Message().int(1, 8).str(2, 'prunelab');
  model.msg(7, graph);
  model.msg(8, new Message().str(1, '').int(2, g.opset ?? 17));
  for (const [domain, version] of Object.entries(g.extraOpsets ?? {})) model.msg(8, new Message().str(1, domain).int(2, version));
  return model.encode();
}
