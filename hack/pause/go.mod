module finex.local/pause

go 1.22
