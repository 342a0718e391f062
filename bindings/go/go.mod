module github.com/rocmforge/rocmforge-go

go 1.22
