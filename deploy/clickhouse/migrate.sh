#!/usr/bin/env bash
echo "migrations: todo" >&2
