// Package demo does things.
package demo

import (
	"fmt"
	str "strings"
)

import "os"

const Max = 10

var (
	count int
	name  = "x"
)

type Point struct {
	X, Y int `json:"x"`
}

type Shape interface {
	Area() float64
}

func (p *Point) Move(dx int) {
	p.X += dx
	p.Y++
}

func run(items []string, ch chan int) (int, error) {
	total := 0
	for i, it := range items {
		if it == "" {
			continue
		} else if len(it) > Max {
			break
		}
		total = total + i
		fmt.Println(str.ToUpper(it))
	}
	switch total {
	case 0, 1:
		return 0, nil
	default:
		total--
	}
	var v interface{} = total
	switch x := v.(type) {
	case int:
		_ = x
	}
	select {
	case n := <-ch:
		total += n
	case ch <- 1:
	default:
	}
	go func() { ch <- 2 }()
	defer os.Exit(0)
	for j := 0; j < 3; j++ {
		goto done
	}
done:
	return total, fmt.Errorf("bad %d", 'c')
}
