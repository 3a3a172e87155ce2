use joulefarm_energy::decimate_minmax;

#[test]
fn blocks_min_max_mean() {
    let x = [1.0, 5.0, f64::NAN, 2.0, f64::NAN, f64::NAN, 7.0];
    let d = decimate_minmax(&x, 2).unwrap();
    assert_eq!(d.min[..2], [1.0, 2.0]);
    assert_eq!(d.max[..2], [5.0, 2.0]);
    assert_eq!(d.mean[..2], [3.0, 2.0]);
    assert!(d.min[2].is_nan() && d.max[2].is_nan() && d.mean[2].is_nan());
    assert_eq!((d.min[3], d.max[3], d.mean[3]), (7.0, 7.0, 7.0));
    assert_eq!(decimate_minmax::<f32>(&[], 3).unwrap().min.len(), 0);
    assert_eq!(
        decimate_minmax(&x, 0).unwrap_err().to_string(),
        "decimate_minmax: factor must be >= 1, got 0"
    );
}
