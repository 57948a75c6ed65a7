"""The developer's commands behind `make run`, `make stop`, `make reset`, `make demo` and
`make load`."""
