module github.com/cuelet/cuelet

go 1.26.0
