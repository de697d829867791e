package safetensors_test

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/embedder/safetensors"
)

func file(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	b, err := safetensors.Encode(map[string]safetensors.Tensor{
		"embeddings": safetensors.F32Tensor([]int{2, 3}, []float32{1, 2, 3, 4, 5, -6.5}),
		"weights":    safetensors.F32Tensor([]int{2}, []float32{0.5, 2}),
	})
	require.NoError(t, err)
	f, err := safetensors.Parse(b)
	require.NoError(t, err)
	e := f.Tensors["embeddings"]
	require.Equal(t, []int{2, 3}, e.Shape)
	v, err := e.Float32s()
	require.NoError(t, err)
	require.Equal(t, []float32{1, 2, 3, 4, 5, -6.5}, v)
	_, err = e.Ints()
	require.Error(t, err)
}

func TestDTypes(t *testing.T) {
	t.Parallel()
	// F16: 1.0, -2.0, 0.5, a subnormal (2^-24); BF16: 1.0, -3.0.
	f16 := []uint16{0x3c00, 0xc000, 0x3800, 0x0001}
	bf16 := []uint16{0x3f80, 0xc040}
	data := make([]byte, 0, 12+8+3)
	for _, h := range append(f16, bf16...) {
		data = binary.LittleEndian.AppendUint16(data, h)
	}
	data = binary.LittleEndian.AppendUint64(data, uint64(7))
	data = append(data, 0xff, 2, 3)
	header := `{"__metadata__":{"format":"pt"},` +
		`"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},` +
		`"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},` +
		`"l":{"dtype":"I64","shape":[1],"data_offsets":[12,20]},` +
		`"i":{"dtype":"I8","shape":[3],"data_offsets":[20,23]}}`
	f, err := safetensors.Parse(file(header, data))
	require.NoError(t, err)
	require.Equal(t, "pt", f.Metadata["format"])
	h, err := f.Tensors["h"].Float32s()
	require.NoError(t, err)
	require.Equal(t, []float32{1, -2, 0.5, 1.0 / (1 << 24)}, h)
	b, err := f.Tensors["b"].Float32s()
	require.NoError(t, err)
	require.Equal(t, []float32{1, -3}, b)
	l, err := f.Tensors["l"].Ints()
	require.NoError(t, err)
	require.Equal(t, []int{7}, l)
	i, err := f.Tensors["i"].Ints()
	require.NoError(t, err)
	require.Equal(t, []int{-1, 2, 3}, i)
}

func TestMalformed(t *testing.T) {
	t.Parallel()
	data := make([]byte, 16)
	cases := map[string][]byte{
		"short":            {1, 2, 3},
		"header too long":  binary.LittleEndian.AppendUint64(nil, 1<<40),
		"not json":         file("nope", nil),
		"unknown dtype":    file(`{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}`, data),
		"offsets outside":  file(`{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}`, data),
		"offsets reversed": file(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}`, data),
		"size mismatch":    file(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, data),
		"negative dim":     file(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, data),
		"huge shape":       file(`{"a":{"dtype":"U8","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,16]}}`, data),
		"overlap": file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},`+
			`"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, data),
		"bad metadata": file(`{"__metadata__":{"a":1}}`, nil),
	}
	for name, b := range cases {
		_, err := safetensors.Parse(b)
		require.ErrorIs(t, err, safetensors.ErrFormat, name)
	}
}

// FuzzParse: any input parses cleanly or fails with ErrFormat, and every parsed
// tensor converts without reading outside its bytes.
func FuzzParse(f *testing.F) {
	b, err := safetensors.Encode(map[string]safetensors.Tensor{
		"embeddings": safetensors.F32Tensor([]int{2, 2}, []float32{1, 2, 3, 4}),
	})
	require.NoError(f, err)
	f.Add(b)
	f.Add(file(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}`, []byte{0, 0x3c, 0, 0xc0}))
	f.Add(file(`{"a":{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := safetensors.Parse(b)
		if err != nil {
			require.ErrorIs(t, err, safetensors.ErrFormat)
			return
		}
		for _, tensor := range file.Tensors {
			if v, err := tensor.Float32s(); err == nil {
				n := 1
				for _, d := range tensor.Shape {
					n *= d
				}
				require.Len(t, v, n)
			}
			_, _ = tensor.Ints()
		}
	})
}
