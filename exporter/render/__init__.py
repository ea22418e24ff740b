"""Renderers: each turns a snapshot into bytes once per refresh."""
