// Package safetensors reads the safetensors tensor format: an 8-byte
// little-endian header length N, N bytes of JSON describing each tensor (dtype,
// shape, byte offsets into the data that follows), then the raw little-endian
// tensor bytes. Every offset and size is checked, so a damaged or hostile file
// is an error, never a panic or an oversized allocation.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
)

// MaxHeaderSize bounds the JSON header, as the format's reference
// implementation does.
const MaxHeaderSize = 100 << 20

// ErrFormat is matched by every error about a malformed file.
var ErrFormat = errors.New("safetensors: malformed file")

// DType is a tensor element type.
type DType string

// Element types this package converts to float32.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
)

var dtypeSize = map[DType]int{
	F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1,
	"U64": 8, "U32": 4, "U16": 2, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}

// Tensor is one tensor of a file; Data aliases the file's bytes.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// File is a parsed safetensors file.
type File struct {
	Tensors  map[string]Tensor
	Metadata map[string]string
}

// Open reads and parses the file at path.
func Open(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return Parse(b)
}

type headerEntry struct {
	DType       DType    `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets []uint64 `json:"data_offsets"`
}

// Parse parses a whole file held in b; the tensors alias b.
func Parse(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the header length", ErrFormat, len(b))
	}
	n := binary.LittleEndian.Uint64(b[:8])
	if n > MaxHeaderSize || n > uint64(len(b)-8) {
		return nil, fmt.Errorf("%w: header length %d does not fit the file of %d bytes", ErrFormat, n, len(b))
	}
	header := b[8 : 8+n]
	data := b[8+n:]

	var raw map[string]json.RawMessage
	if err := json.Unmarshal(header, &raw); err != nil {
		return nil, fmt.Errorf("%w: header is not a JSON object: %w", ErrFormat, err)
	}
	f := &File{Tensors: make(map[string]Tensor, len(raw))}
	type span struct {
		name       string
		begin, end uint64
	}
	spans := make([]span, 0, len(raw))
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("%w: __metadata__ must map strings to strings", ErrFormat)
			}
			continue
		}
		var h headerEntry
		if err := json.Unmarshal(msg, &h); err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %w", ErrFormat, name, err)
		}
		size, ok := dtypeSize[h.DType]
		if !ok {
			return nil, fmt.Errorf("%w: tensor %q: unknown dtype %q", ErrFormat, name, h.DType)
		}
		if len(h.DataOffsets) != 2 || h.DataOffsets[0] > h.DataOffsets[1] || h.DataOffsets[1] > uint64(len(data)) {
			return nil, fmt.Errorf("%w: tensor %q: data_offsets %v outside the %d data bytes", ErrFormat, name, h.DataOffsets, len(data))
		}
		elems := uint64(1)
		shape := make([]int, len(h.Shape))
		for i, d := range h.Shape {
			if d < 0 || d > math.MaxInt32 {
				return nil, fmt.Errorf("%w: tensor %q: bad dimension %d", ErrFormat, name, d)
			}
			shape[i] = int(d)
			// Every factor is below 2^31 and the product is checked against the
			// data length each step, so it cannot overflow.
			elems *= uint64(d)
			if elems > uint64(len(data)) {
				return nil, fmt.Errorf("%w: tensor %q: shape %v larger than the file", ErrFormat, name, h.Shape)
			}
		}
		begin, end := h.DataOffsets[0], h.DataOffsets[1]
		if elems*uint64(size) != end-begin {
			return nil, fmt.Errorf("%w: tensor %q: shape %v of %s needs %d bytes, offsets give %d", ErrFormat, name, h.Shape, h.DType, elems*uint64(size), end-begin)
		}
		f.Tensors[name] = Tensor{Name: name, DType: h.DType, Shape: shape, Data: data[begin:end:end]}
		spans = append(spans, span{name, begin, end})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].begin < spans[j].begin })
	for i := 1; i < len(spans); i++ {
		if spans[i].begin < spans[i-1].end {
			return nil, fmt.Errorf("%w: tensors %q and %q overlap", ErrFormat, spans[i-1].name, spans[i].name)
		}
	}
	return f, nil
}

// Float32s converts the tensor's elements to float32.
func (t Tensor) Float32s() ([]float32, error) {
	size, ok := dtypeSize[t.DType]
	if !ok {
		return nil, fmt.Errorf("safetensors: tensor %q: unknown dtype %q", t.Name, t.DType)
	}
	n := len(t.Data) / size
	out := make([]float32, n)
	d := t.Data
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:])))
		}
	case F16:
		for i := range out {
			out[i] = halfToFloat(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(d[2*i:])) << 16)
		}
	case I8:
		for i := range out {
			out[i] = float32(int8(d[i]))
		}
	case U8:
		for i := range out {
			out[i] = float32(d[i])
		}
	case I16:
		for i := range out {
			out[i] = float32(int16(binary.LittleEndian.Uint16(d[2*i:])))
		}
	case I32:
		for i := range out {
			out[i] = float32(int32(binary.LittleEndian.Uint32(d[4*i:])))
		}
	case I64:
		for i := range out {
			out[i] = float32(int64(binary.LittleEndian.Uint64(d[8*i:])))
		}
	default:
		return nil, fmt.Errorf("safetensors: tensor %q: dtype %s is not convertible to float32", t.Name, t.DType)
	}
	return out, nil
}

// Ints converts an integer tensor's elements to int.
func (t Tensor) Ints() ([]int, error) {
	var out []int
	d := t.Data
	switch t.DType {
	case I64:
		out = make([]int, len(d)/8)
		for i := range out {
			out[i] = int(int64(binary.LittleEndian.Uint64(d[8*i:])))
		}
	case I32:
		out = make([]int, len(d)/4)
		for i := range out {
			out[i] = int(int32(binary.LittleEndian.Uint32(d[4*i:])))
		}
	case I16:
		out = make([]int, len(d)/2)
		for i := range out {
			out[i] = int(int16(binary.LittleEndian.Uint16(d[2*i:])))
		}
	case I8:
		out = make([]int, len(d))
		for i := range out {
			out[i] = int(int8(d[i]))
		}
	case U8:
		out = make([]int, len(d))
		for i := range out {
			out[i] = int(d[i])
		}
	default:
		return nil, fmt.Errorf("safetensors: tensor %q: dtype %s is not an integer type", t.Name, t.DType)
	}
	return out, nil
}

// halfToFloat converts an IEEE 754 binary16 value.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0:
		// Subnormal: renormalise.
		e := uint32(127 - 15 + 1)
		for frac&0x400 == 0 {
			frac <<= 1
			e--
		}
		frac &= 0x3ff
		return math.Float32frombits(sign | e<<23 | frac<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	default:
		return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
	}
}

// Encode writes tensors (name → float32 values with shape) as a safetensors
// file of F32 tensors, in name order. It exists for tests and tools that need a
// small model on disk.
func Encode(tensors map[string]Tensor) ([]byte, error) {
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	header := map[string]any{}
	var data []byte
	for _, name := range names {
		t := tensors[name]
		if _, ok := dtypeSize[t.DType]; !ok {
			return nil, fmt.Errorf("safetensors: tensor %q: unknown dtype %q", name, t.DType)
		}
		begin := len(data)
		data = append(data, t.Data...)
		header[name] = map[string]any{"dtype": t.DType, "shape": t.Shape, "data_offsets": []int{begin, len(data)}}
	}
	h, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	// Pad the header with spaces to 8 bytes, as the reference writer does.
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := make([]byte, 8, 8+len(h)+len(data))
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	out = append(out, h...)
	return append(out, data...), nil
}

// F32Tensor builds an F32 tensor from values, for Encode.
func F32Tensor(shape []int, values []float32) Tensor {
	b := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return Tensor{DType: F32, Shape: shape, Data: b}
}
