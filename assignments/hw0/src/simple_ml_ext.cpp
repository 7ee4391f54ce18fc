// hw0: softmax regression in C++, exposed to Python with pybind11 as the module
// `simple_ml_ext`. Build it with `make` (or `make build`).
//
// All matrices are dense and row-major: element (i, j) of an m x n matrix M is M[i * n + j].
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <vector>

namespace py = pybind11;

// One epoch of minibatch SGD for softmax regression, in order, updating theta in place.
//
// Same math as simple_ml.softmax_regression_epoch: for each minibatch X_b (B rows),
//   Z = softmax(X_b theta)          (row-wise, shape B x k)
//   theta -= lr / B * X_b^T (Z - I_y)
// The last minibatch may have fewer than `batch` rows.
//
// Args:
//   X:     m x n inputs (row-major)
//   y:     m labels in [0, k)
//   theta: n x k parameters (row-major), modified in place
//   m, n, k: number of examples, input dimension, number of classes
//   lr:    step size
//   batch: minibatch size
void softmax_regression_epoch_cpp(const float *X, const unsigned char *y, float *theta, size_t m,
                                  size_t n, size_t k, float lr, size_t batch) {
  // BEGIN YOUR SOLUTION (hw0)
  std::vector<float> probabilities(batch * k);
  std::vector<float> gradient(n * k);
  for (size_t start = 0; start < m; start += batch) {
    const size_t rows = std::min(batch, m - start);
    const float *X_b = X + start * n;
    // Logits, then a row-wise softmax shifted by the row maximum (no overflow in exp).
    for (size_t i = 0; i < rows; ++i) {
      float *row = &probabilities[i * k];
      for (size_t j = 0; j < k; ++j) {
        float logit = 0.0f;
        for (size_t l = 0; l < n; ++l) logit += X_b[i * n + l] * theta[l * k + j];
        row[j] = logit;
      }
      const float largest = *std::max_element(row, row + k);
      float total = 0.0f;
      for (size_t j = 0; j < k; ++j) {
        row[j] = std::exp(row[j] - largest);
        total += row[j];
      }
      for (size_t j = 0; j < k; ++j) row[j] /= total;
      row[y[start + i]] -= 1.0f;  // Z - I_y
    }
    // gradient = X_b^T (Z - I_y) / rows, then the step.
    std::fill(gradient.begin(), gradient.end(), 0.0f);
    for (size_t i = 0; i < rows; ++i)
      for (size_t l = 0; l < n; ++l) {
        const float x = X_b[i * n + l];
        for (size_t j = 0; j < k; ++j) gradient[l * k + j] += x * probabilities[i * k + j];
      }
    const float step = lr / static_cast<float>(rows);
    for (size_t index = 0; index < n * k; ++index) theta[index] -= step * gradient[index];
  }
  // END YOUR SOLUTION
}

// Provided: the Python binding. Checks shapes and dtypes, then calls the function above on
// the arrays' memory (theta is updated in place, as in the numpy version).
PYBIND11_MODULE(simple_ml_ext, m) {
  m.def(
      "softmax_regression_epoch_cpp",
      [](py::array_t<float, py::array::c_style> X, py::array_t<unsigned char, py::array::c_style> y,
         py::array theta, float lr, int batch) {
        // theta is updated in place, so it must not be silently converted to a copy.
        if (!py::isinstance<py::array_t<float>>(theta) ||
            !(theta.flags() & py::array::c_style) || !theta.writeable())
          throw std::invalid_argument("theta must be a writeable C-contiguous float32 array");
        if (X.ndim() != 2 || y.ndim() != 1 || theta.ndim() != 2)
          throw std::invalid_argument("expected X (m, n), y (m,), theta (n, k)");
        if (y.shape(0) != X.shape(0) || theta.shape(0) != X.shape(1))
          throw std::invalid_argument("shapes of X, y and theta do not agree");
        if (batch <= 0) throw std::invalid_argument("batch must be positive");
        softmax_regression_epoch_cpp(static_cast<const float *>(X.request().ptr),
                                     static_cast<const unsigned char *>(y.request().ptr),
                                     static_cast<float *>(theta.mutable_data()), X.shape(0),
                                     X.shape(1), theta.shape(1), lr, static_cast<size_t>(batch));
      },
      py::arg("X"), py::arg("y"), py::arg("theta"), py::arg("lr"), py::arg("batch"));
}
