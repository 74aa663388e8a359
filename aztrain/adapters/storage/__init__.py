"""Storage adapters: the control store on Table Storage and the data store on Blob Storage."""
