//go:build !linux

package storage

import (
	"context"
	"errors"
	"fmt"
)

// errNoFileStore is what a file store answers on systems other than Linux:
// it relies on openat2, syncfs and extended attributes.
var errNoFileStore = errors.New("the file:// store needs Linux; use s3:// here")

// FileStore keeps code images in a local folder on Linux; elsewhere it
// refuses to open.
type FileStore struct{ root string }

// NewFile fails on this system: see errNoFileStore.
func NewFile(dir string) (*FileStore, error) {
	return nil, fmt.Errorf("open %s: %w", dir, errNoFileStore)
}

// String returns the store's file:// URL.
func (s *FileStore) String() string { return "file://" + s.root }

// Root returns the store's folder.
func (s *FileStore) Root() string { return s.root }

// Put fails on this system.
func (s *FileStore) Put(context.Context, string, []byte, Meta) (Object, error) {
	return Object{}, errNoFileStore
}

// Stat fails on this system.
func (s *FileStore) Stat(context.Context, string) (Object, error) { return Object{}, errNoFileStore }

// Get fails on this system.
func (s *FileStore) Get(context.Context, string) ([]byte, Object, error) {
	return nil, Object{}, errNoFileStore
}

// List fails on this system.
func (s *FileStore) List(context.Context, string, func(Object) error) error { return errNoFileStore }

// PutBlob fails on this system.
func (s *FileStore) PutBlob(context.Context, string, []byte, string) error { return errNoFileStore }

// GetBlob fails on this system.
func (s *FileStore) GetBlob(context.Context, string) ([]byte, error) { return nil, errNoFileStore }
