module github.com/cuelet/cuelet

go 1.26.0

require github.com/google/renameio/v2 v2.0.2
