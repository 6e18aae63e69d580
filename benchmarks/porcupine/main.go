// Command porcupinebench checks a key-value history with Porcupine and prints the verdict and the time.
//
// It is the Go side of benchmarks/bench_linearizability_scale.py: the Python benchmark writes a history of get,
// put and append operations on a map of strings as JSON, runs this program on it, and compares its times with
// sandbox.checkers.check_linearizability on the same history. The model is Porcupine's own key-value model from
// its test suite (porcupine_test.go, kvModel): one string per key, partitioned by key, states hashed with FNV-1a.
//
// Usage: porcupinebench HISTORY.json REPEATS TIMEOUT_SECONDS
//
// It prints one JSON object: {"result": "Ok" | "Illegal" | "Unknown", "seconds": [one per repeat]}, the time of
// porcupine.CheckOperationsTimeout alone (reading the JSON is not timed).
package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"sort"
	"strconv"
	"time"

	"chaosdojo/porcupinebench/porcupine"
)

type operation struct {
	Client int    `json:"client"`
	F      string `json:"f"` // get, put or append
	Key    string `json:"key"`
	Value  string `json:"value"`  // what a put or an append writes
	Output string `json:"output"` // what a get saw
	Call   int64  `json:"call"`
	Return int64  `json:"return"`
}

type kvInput struct {
	op    uint8 // 0 => get, 1 => put, 2 => append
	key   string
	value string
}

type kvOutput struct {
	value string
}

// kvModel is porcupine_test.go's kvModel (Partition, Init, Step, Hash), unchanged.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		m := make(map[string][]porcupine.Operation)
		for _, v := range history {
			key := v.Input.(kvInput).key
			m[key] = append(m[key], v)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		ret := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			ret = append(ret, m[k])
		}
		return ret
	},
	Init: func() interface{} {
		return ""
	},
	Step: func(state, input, output interface{}) (bool, interface{}) {
		inp := input.(kvInput)
		out := output.(kvOutput)
		st := state.(string)
		if inp.op == 0 {
			return out.value == st, state
		} else if inp.op == 1 {
			return true, inp.value
		} else {
			return true, (st + inp.value)
		}
	},
	Hash: func(state interface{}) uint64 {
		h := fnv.New64a()
		h.Write([]byte(state.(string)))
		return h.Sum64()
	},
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "porcupinebench: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: porcupinebench HISTORY.json REPEATS TIMEOUT_SECONDS")
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	var ops []operation
	if err := json.Unmarshal(raw, &ops); err != nil {
		fail("%s: %v", os.Args[1], err)
	}
	repeats, err := strconv.Atoi(os.Args[2])
	if err != nil || repeats < 1 {
		fail("REPEATS=%q: give a positive whole number", os.Args[2])
	}
	limit, err := strconv.ParseFloat(os.Args[3], 64)
	if err != nil || limit <= 0 {
		fail("TIMEOUT_SECONDS=%q: give a positive number of seconds", os.Args[3])
	}
	codes := map[string]uint8{"get": 0, "put": 1, "append": 2}
	history := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		code, known := codes[op.F]
		if !known {
			fail("f=%q: give get, put or append", op.F)
		}
		history = append(history, porcupine.Operation{
			ClientId: op.Client,
			Input:    kvInput{op: code, key: op.Key, value: op.Value},
			Call:     op.Call,
			Output:   kvOutput{value: op.Output},
			Return:   op.Return,
		})
	}
	timeout := time.Duration(limit * float64(time.Second))
	var result porcupine.CheckResult
	seconds := make([]float64, 0, repeats)
	for i := 0; i < repeats; i++ {
		start := time.Now()
		result = porcupine.CheckOperationsTimeout(kvModel, history, timeout)
		seconds = append(seconds, time.Since(start).Seconds())
	}
	out, _ := json.Marshal(map[string]interface{}{"result": result, "seconds": seconds})
	fmt.Println(string(out))
}
