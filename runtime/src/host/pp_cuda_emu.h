/* stub: to be written (host emulation header) */
